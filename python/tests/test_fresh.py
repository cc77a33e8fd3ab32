"""Fresh when handed: a slow Python loop behind a camera that pauses is
never handed a frame older than the threshold, and every accepted frame is
still answered once (the one that grew stale in its slot: `expired`)."""

import threading
import time

import numpy as np

import framelink

THRESHOLD_MS = 80


def test_a_slow_loop_behind_a_paused_camera_never_takes_a_stale_frame():
    image = np.full((240, 320, 3), 90, np.uint8)
    taken = threading.Event()
    stop = threading.Event()
    with framelink.Server(listen="127.0.0.1:0", max_latency_ms=THRESHOLD_MS) as server:
        client = framelink.Client(server.address, name="pausing")

        def camera():
            """30 fps; once the loop has taken a frame, one more frame and
            then a pause of 1.2 s: that frame waits in its slot while the
            loop works on the one it took."""
            paused = False
            while not stop.is_set():
                client.send(image)
                if taken.is_set() and not paused:
                    paused = True
                    stop.wait(1.2)
                stop.wait(1 / 30)

        sender = threading.Thread(target=camera)
        sender.start()
        ages = []
        try:
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                frame = server.take(timeout=0.5)
                if frame is None:
                    continue
                ages.append(frame.age_ms)  # at the take
                taken.set()
                time.sleep(0.4)  # the detector
                frame.reply({"n": len(ages)})
        finally:
            stop.set()
            sender.join()
        # The camera has stopped: its last frame is handed if still fresh,
        # else answered expired while this take waits; then none comes.
        while (frame := server.take(timeout=0.3)) is not None:
            ages.append(frame.age_ms)
            frame.reply({"n": len(ages)})
        summary = client.close()
        served = server.close()
    assert len(ages) >= 3, ages
    # The frame left in the slot by the pause was about 400 ms old at the
    # next take: it was answered expired, never handed.
    assert max(ages) <= THRESHOLD_MS + 5, ages
    assert served["frames_expired"] >= 1, served
    assert summary["results_expired"] >= 1, summary
    # Every accepted frame answered exactly once, nothing owed.
    answered = sum(summary[f"results_{s}"] for s in ("processed", "skipped", "failed", "expired"))
    assert summary["results_owed"] == 0, summary
    assert answered == summary["frames_accepted"], summary
