"""framelink.Worker: a pool worker behind a real nats-server whose frames
are taken by Python; the Rust server and client around it."""

import framelink
from conftest import WAIT, finished, results_of, rust_server


def test_a_python_worker_answers_a_servers_frames_through_nats(programs, nats_url):
    server, address = rust_server(programs, "--processor", nats_url)
    with framelink.Worker(nats_url, name="py-worker") as worker:
        client, results = programs.client(address, "--duration", 3, "--width", 320, "--height", 240)
        answered = set()
        while client.poll() is None:
            frame = worker.take(timeout=0.2)
            if frame is not None:
                image = frame.to_numpy()
                if frame.reply({"rows": int(image.shape[0]), "id": frame.frame_id}):
                    answered.add(frame.frame_id)
        finished(client)
        summary = worker.close()
    server.terminate()
    finished(server)
    processed = [r for r in results_of(results) if r["status"] == "processed"]
    assert len(processed) >= 10, processed
    for r in processed:
        assert r["result"] == {"rows": 240, "id": r["frame_id"]}
        assert r["frame_id"] in answered
    assert summary["frames_processed"] >= len(processed), summary


def test_a_worker_without_a_broker_says_so():
    worker = framelink.Worker("nats://127.0.0.1:1")
    try:
        try:
            worker.take(timeout=WAIT)
        except framelink.Error as e:
            assert "cannot connect to NATS at nats://127.0.0.1:1" in str(e), e
        else:
            raise AssertionError("take() returned although no broker was there")
    finally:
        try:
            worker.close()
        except framelink.Error:
            pass
