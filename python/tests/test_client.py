"""framelink.Client: frames made in Python, sent by the Rust client, to a
Rust framelink-server and to a Python one."""

import json

import numpy as np
import pytest

import framelink
from conftest import WAIT, finished, rust_server, take


def solid(bgr, width=64, height=48):
    image = np.empty((height, width, 3), np.uint8)
    image[:] = bgr
    return image


@pytest.mark.parametrize(
    "image, rgb, expect_bgr",
    [
        (solid((255, 0, 0)), False, (255, 0, 0)),  # blue, in OpenCV's order
        (solid((255, 0, 0)), True, (0, 0, 255)),  # the same bytes read as RGB: red
        (solid((0, 200, 0))[:, ::2], False, (0, 200, 0)),  # not contiguous: a view
    ],
)
def test_colours_arrive_in_the_order_sent(image, rgb, expect_bgr):
    with framelink.Server(listen="127.0.0.1:0") as server:
        with framelink.Client(server.address, name="py-cam") as client:
            client.send(image, rgb=rgb)
            frame = take(server)
            assert frame.camera == "py-cam"
            assert (frame.height, frame.width) == image.shape[:2]
            got = frame.to_numpy().reshape(-1, 3).mean(axis=0)
            assert np.allclose(got, expect_bgr, atol=6), got
            frame.reply()


def test_jpeg_bytes_are_sent_as_they_are():
    with framelink.Server(listen="127.0.0.1:0") as server:
        with framelink.Client(server.address) as client:
            client.send(solid((10, 20, 30)))
            jpeg = bytes(take(server).jpeg)
            client.send(jpeg)
            assert bytes(take(server).jpeg) == jpeg


def test_results_from_a_rust_server(programs, tmp_path):
    summary_path = tmp_path / "server.json"
    server, address = rust_server(programs, "--processor", "count", "--summary-json", summary_path)
    with framelink.Client(address, name="py-cam") as client:
        results = client.results(timeout=WAIT)
        got = []
        for i in range(10):
            client.send(solid((i * 20, 0, 0)))
            got.append(next(results))  # each frame's result before the next frame
    summary = client.close()
    assert [r["status"] for r in got] == ["processed"] * 10, got
    assert all(r["kind"] == "json" for r in got)
    ids = [r["frame_id"] for r in got]
    assert ids == sorted(set(ids))
    assert all(r["capture_to_result_ms"] >= 0 for r in got)
    assert summary["frames_sent"] >= 10, summary
    server.terminate()
    finished(server)
    served = json.loads(summary_path.read_text())
    assert served["frames_accepted"] >= 10
    assert served["frames_processed"] >= 10


def test_the_client_reconnects_by_itself_when_the_server_comes_back(programs):
    first = framelink.Server(listen="127.0.0.1:0")
    address = first.address
    with framelink.Client(address, max_backoff=0.1) as client:
        client.send(solid((1, 2, 3)))
        take(first).reply()
        first.close()
        with framelink.Server(listen=address) as second:
            frame = None
            # Frames sent while it reconnects replace each other; one gets through.
            while frame is None:
                client.send(solid((1, 2, 3)))
                frame = second.take(timeout=0.1)
            frame.reply()


def test_bad_frames_and_arguments_are_python_errors():
    with pytest.raises(ValueError, match="quality"):
        framelink.Client("127.0.0.1:1", quality=500)
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_flag'"):
        framelink.Client("127.0.0.1:1", no_such_flag=True)
    with pytest.raises(TypeError, match="did you mean 'connect_timeout'"):
        framelink.Client("127.0.0.1:1", connect_timeoutt=1)
    with pytest.raises(ValueError, match="source"):
        framelink.Client("127.0.0.1:1", source="camera")
    with framelink.Client("127.0.0.1:1") as client:
        with pytest.raises(TypeError, match="numpy"):
            client.send("not an image")
        with pytest.raises(ValueError, match="3 colour channels"):
            client.send(np.zeros((4, 4, 4), np.uint8))
        with pytest.raises(ValueError, match="JPEG"):
            client.send(b"not a jpeg")
    with pytest.raises(framelink.StoppedError):
        client.send(solid((0, 0, 0)))
