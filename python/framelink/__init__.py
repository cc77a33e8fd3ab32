"""framelink in Python: live camera frames, fresh or not at all.

The framelink server, client and pool worker run on Rust threads inside
this module; Python takes the newest fresh frame as a numpy array and
answers with a result that goes back to the camera::

    import framelink

    with framelink.Server(listen="0.0.0.0:1998", max_latency_ms=80) as server:
        for frame in server:            # the newest fresh frame of any camera
            image = frame.to_numpy()    # H×W×3 uint8, BGR (OpenCV's order)
            # or a model's input, letterboxed: frame.to_numpy(size=640, rgb=True,
            # layout="chw", dtype="float32"); frame.letterbox(640).to_frame(boxes)
            frame.reply({"faces": 2})   # goes back to the camera as its RESULT

Frames that waited past ``max_latency_ms`` are dropped before Python sees
them, and while Python works on one frame, newer ones replace older ones:
a slow detector always gets the newest frame, never a queue.

Keyword arguments are the programs' flags (``max_latency_ms=80`` is
``--max-latency-ms 80``; ``framelink-server --help`` lists them all) and are
checked by the same code: an unknown one raises ``TypeError``, a bad value
``ValueError``. Every blocking call releases the GIL and can be
interrupted with Ctrl-C.
"""

from ._framelink import (
    DEFAULT_PORT,
    Client,
    DecodeError,
    Error,
    Frame,
    Letterbox,
    Server,
    StoppedError,
    Worker,
    __version__,
)

__all__ = [
    "DEFAULT_PORT",
    "Client",
    "DecodeError",
    "Error",
    "Frame",
    "Letterbox",
    "Server",
    "StoppedError",
    "Worker",
    "__version__",
]
