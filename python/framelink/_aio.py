"""`async for frame in server` (or a worker): frames for asyncio programs.

Each take waits in the event loop's default executor, one at a time: the
loop goes on with its other coroutines meanwhile (no thread per camera: one
server's takes are one at a time, whatever the cameras), and a frame is
handed the moment it comes, the newest fresh one, as `for frame in server`
hands it.
"""

import asyncio

from ._framelink import StoppedError

# How long one take waits before it looks again: a loop that stops
# iterating gives its executor thread back within this.
POLL = 0.1


async def frames(source):
    """The frames of `source` (a Server or a Worker) until it stops; raises
    its error if it failed."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            frame = await loop.run_in_executor(None, source.take, POLL)
        except StoppedError:
            return
        if frame is not None:
            yield frame
