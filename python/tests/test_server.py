"""framelink.Server: a Rust framelink-client streams the test pattern, a
Python loop takes the frames as numpy arrays and answers them."""

import gc
import statistics
import time

import numpy as np
import pytest

import framelink
from conftest import WAIT, finished, results_of, take


def test_the_test_pattern_arrives_as_a_numpy_image(programs):
    with framelink.Server(listen="127.0.0.1:0") as server:
        programs.client(server.address, "--width", 320, "--height", 240, "--name", "cam-a")
        frame = take(server)
        assert frame.camera == "cam-a"
        assert (frame.width, frame.height) == (320, 240)
        bgr = frame.to_numpy()
        rgb = frame.to_numpy(rgb=True)
        assert bgr.shape == (240, 320, 3) and bgr.dtype == np.uint8
        assert np.array_equal(bgr[..., ::-1], rgb)
        # The pattern's green grows from the top row to the bottom one.
        green = rgb[..., 1].astype(float)
        assert green[-24:].mean() - green[:24].mean() > 150
        # The JPEG as it came: a read-only view, no copy.
        jpeg = frame.jpeg
        assert jpeg.dtype == np.uint8 and jpeg.ndim == 1
        assert bytes(jpeg[:2]) == b"\xff\xd8" and bytes(jpeg[-2:]) == b"\xff\xd9"
        with pytest.raises(ValueError):
            jpeg[0] = 0
        assert 0 <= frame.arrival_age_ms <= frame.age_ms < 10_000
        assert abs(frame.received_at - time.time()) < 10
        assert frame.reply({"ok": True}) is True
        assert frame.answered
        assert frame.reply("again") is False, "a frame is answered once"


def test_replies_reach_the_camera_and_skipped_frames_are_never_handed(programs):
    with framelink.Server(listen="127.0.0.1:0") as server:
        client, results = programs.client(server.address, "--duration", 2)
        replied, refused = set(), []
        while client.poll() is None:
            frame = server.take(timeout=0.2)
            if frame is not None:
                result = {"seen": frame.frame_id, "pixels": int(frame.to_numpy().shape[0])}
                if frame.reply(result):
                    replied.add(frame.frame_id)
                else:
                    refused.append(frame.frame_id)
        finished(client)
    # A reply is refused only once the camera has gone: the last frame at most.
    assert len(refused) <= 1 and all(i > max(replied) for i in refused), refused
    summary = server.close()
    lines = results_of(results)
    ids = [r["frame_id"] for r in lines]
    assert len(ids) == len(set(ids)), "one RESULT per frame"
    processed = [r for r in lines if r["status"] == "processed"]
    assert processed, lines[:5]
    for r in processed:
        assert r["kind"] == "json" and r["result"] == {"seen": r["frame_id"], "pixels": 480}
        assert r["frame_id"] in replied
    # Every reply reached the camera, but perhaps the last (the camera was leaving).
    assert len(replied - {r["frame_id"] for r in processed}) <= 1
    skipped = {r["frame_id"] for r in lines if r["status"] == "skipped"}
    assert not skipped & replied
    assert summary["frames_accepted"] >= len(replied)
    assert summary["clients"], summary


def test_a_slow_detector_gets_the_newest_frame_never_a_queue(programs):
    with framelink.Server(listen="127.0.0.1:0") as server:
        client, results = programs.client(server.address, "--fps", 30, "--duration", 3)
        taken = []
        while client.poll() is None:
            frame = server.take(timeout=0.2)
            if frame is None:
                continue
            taken.append((frame.frame_id, frame.age_ms))
            time.sleep(0.1)  # the detector's 100 ms of work
            frame.reply("done")
        finished(client)
    ids = [i for i, _ in taken]
    assert len(ids) >= 10, taken
    assert ids == sorted(set(ids)), "frames are handed newest first, each once"
    # At 30 fps, a 100 ms detector finds about three newer frames each time.
    assert statistics.mean(b - a for a, b in zip(ids, ids[1:])) >= 2
    # No queue: what it is handed waited one frame interval at most.
    assert statistics.median(age for _, age in taken) < 80 + 33
    lines = results_of(results)
    skipped = {r["frame_id"] for r in lines if r["status"] == "skipped"}
    assert len(skipped) >= len(ids), "the frames the detector had no time for are skipped"
    assert not skipped & set(ids)


@pytest.mark.parametrize("max_latency_ms, handed", [(40, False), (1000, True)])
def test_frames_older_than_the_threshold_never_reach_python(programs, delay_link, max_latency_ms, handed):
    with framelink.Server(listen="127.0.0.1:0", max_latency_ms=max_latency_ms) as server:
        link = delay_link(server.address, 0.060)
        client, _ = programs.client(link.address, "--duration", 3)
        ages = []
        while client.poll() is None:
            frame = server.take(timeout=0.2)
            if frame is not None:
                ages.append(frame.arrival_age_ms)
                frame.reply()
        finished(client)
        summary = server.close()
    if handed:
        assert ages, summary
        # The age the gate measured includes the link's 60 ms.
        assert min(ages) >= 50, ages
        assert all(a <= max_latency_ms for a in ages)
    else:
        assert ages == [], f"stale frames reached Python: {ages}"
        assert summary["frames_dropped_stale"] >= 10, summary


def test_a_frame_let_go_unanswered_is_answered_failed(programs):
    with framelink.Server(listen="127.0.0.1:0") as server:
        with framelink.Client(server.address) as client:
            client.send(np.zeros((48, 64, 3), np.uint8))
            frame = take(server)
            frame_id = frame.frame_id
            del frame
            gc.collect()
            result = next(client.results(timeout=WAIT))
            assert result["frame_id"] == frame_id
            assert result["status"] == "failed"
            assert "without a reply" in result["result"]


def test_a_reply_after_process_timeout_is_refused(programs):
    with framelink.Server(listen="127.0.0.1:0", process_timeout=0.2) as server:
        with framelink.Client(server.address) as client:
            client.send(np.zeros((48, 64, 3), np.uint8))
            frame = take(server)
            result = next(client.results(timeout=WAIT))
            assert result["status"] == "failed" and "process_timeout" in result["result"]
            assert frame.answered
            assert frame.reply({"late": True}) is False


def test_an_exception_in_the_loop_closes_the_server(programs):
    with pytest.raises(RuntimeError, match="detector crashed"):
        with framelink.Server(listen="127.0.0.1:0") as server:
            client, _ = programs.client(server.address)
            frame = take(server)
            raise RuntimeError("detector crashed")
    assert not server.running
    assert frame.reply("too late") is False
    with pytest.raises(framelink.StoppedError):
        server.take(timeout=0)
    # Its port is free again.
    framelink.Server(listen=server.address).close()


def test_stats_while_running_and_the_summary_at_close(programs):
    server = framelink.Server(listen="127.0.0.1:0")
    try:
        programs.client(server.address, "--name", "cam-s")
        for _ in range(3):
            take(server).reply()
        stats = server.stats()
        assert stats["frames_accepted"] >= 3
        assert [c["name"] for c in stats["clients"]] == ["cam-s"]
    finally:
        summary = server.close()
    assert summary["frames_accepted"] >= stats["frames_accepted"]
    assert server.stats() is None
    assert server.close() == summary, "close() twice returns the same summary"


def test_duration_ends_the_loop(programs):
    started = time.monotonic()
    with framelink.Server(listen="127.0.0.1:0", duration=0.5) as server:
        for _ in server:
            pass
    assert 0.4 < time.monotonic() - started < WAIT
    assert not server.running


def test_bad_arguments_are_python_errors_naming_the_keyword():
    with pytest.raises(TypeError, match="no_such_flag"):
        framelink.Server(no_such_flag=1)
    with pytest.raises(ValueError, match="max_latency_ms"):
        framelink.Server(max_latency_ms="soon")
    with pytest.raises(ValueError, match="processor"):
        framelink.Server(processor="count")
    with pytest.raises(ValueError, match="timeout"):
        framelink.Server(listen="127.0.0.1:0", duration=1).take(timeout=-1)
    with framelink.Server(listen="127.0.0.1:0") as server:
        with pytest.raises(framelink.Error, match=server.address.split(":")[-1]):
            framelink.Server(listen=server.address)


def test_threads_take_frames_at_once_each_a_different_one(programs):
    import threading

    with framelink.Server(listen="127.0.0.1:0") as server:
        programs.client(server.address, "--name", "cam-1")
        programs.client(server.address, "--name", "cam-2")
        taken = {0: [], 1: []}
        both = threading.Barrier(2, timeout=WAIT)

        def detector(n):
            for _ in range(5):
                frame = take(server)
                taken[n].append((frame.camera, frame.frame_id))
                both.wait()  # each holds its frame while the other takes one
                frame.reply(n)

        threads = [threading.Thread(target=detector, args=(n,)) for n in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert not any(t.is_alive() for t in threads)
    assert len(taken[0]) == len(taken[1]) == 5
    assert not set(taken[0]) & set(taken[1]), "never the same frame twice"
