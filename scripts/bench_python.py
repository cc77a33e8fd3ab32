#!/usr/bin/env python3
"""framelink's Python package against imageZMQ, the usual way Python
detectors get camera frames: frames a second into a Python loop that decodes
each one to a numpy array, the age of what a 100 ms detector is handed, and
the binding's own CPU per frame.

Run by scripts/bench_python.sh (which builds the package in release mode
into target/py-venv); prints a Markdown report. Sender and receiver are
separate processes; both senders send the same test-pattern JPEGs (quality
80) as they are (framelink-client from a folder of them, imageZMQ's
send_jpg), on loopback and through a link that delays 10 ms each way.
"""

import argparse
import contextlib
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

import cv2
import imagezmq
import numpy as np
import zmq

import framelink

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python" / "tests"))
from delaylink import DelayLink  # noqa: E402

BIN = pathlib.Path(os.environ.get("FRAMELINK_BIN_DIR", ROOT / "target" / "release"))
SIZES = [(640, 480), (1920, 1080)]
WAIT = 20.0


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def client(address, width, height, fps, source="test-pattern"):
    """framelink-client: the test pattern, or a folder of JPEGs sent as they
    are (no adaptation: it would re-encode them)."""
    fixed = [] if source == "test-pattern" else ["--adapt", "off"]
    return subprocess.Popen(
        [str(BIN / "framelink-client"), address, "--source", str(source),
         "--width", str(width), "--height", str(height), "--fps", str(fps),
         "--quality", "80", "--stats-interval", "0", *fixed],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def jpeg_folder(jpegs):
    import tempfile

    folder = pathlib.Path(tempfile.mkdtemp(prefix="framelink-bench-"))
    for i, j in enumerate(jpegs):
        (folder / f"{i:04}.jpg").write_bytes(j)
    return folder


def test_pattern_jpegs(width, height, n=30):
    """`n` test-pattern frames as JPEG bytes, made by framelink's own client."""
    with framelink.Server(listen="127.0.0.1:0") as server:
        child = client(server.address, width, height, 0)
        frames = []
        try:
            while len(frames) < n:
                frame = server.take(timeout=WAIT)
                frames.append(bytes(frame.jpeg))
                frame.reply()
        finally:
            child.kill()
            child.wait()
    return frames


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The imageZMQ sender: the same JPEGs, stamped with their send instant
# (time.time(): one machine, one clock). `fps` 0 sends as fast as it can.
SENDER = r"""
import sys, time, pickle, imagezmq
port, reqrep, fps, path = int(sys.argv[1]), sys.argv[2] == "1", float(sys.argv[3]), sys.argv[4]
frames = pickle.load(open(path, "rb"))
if reqrep:
    sender = imagezmq.ImageSender(connect_to=f"tcp://127.0.0.1:{port}")
else:
    sender = imagezmq.ImageSender(connect_to=f"tcp://127.0.0.1:{port}", REQ_REP=False)
    time.sleep(0.5)  # PUB/SUB drops what is sent before the subscriber joins
i, next_at = 0, time.monotonic()
while True:
    if fps:
        next_at += 1 / fps
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    sender.send_jpg(repr(time.time()), frames[i % len(frames)])
    i += 1
"""


def zmq_run(frames, reqrep, seconds, fps=0, detector=0.0, delay=0.0):
    """imageZMQ: fps into the loop, ages (ms) and receiver CPU per frame (ms)."""
    import pickle
    import tempfile

    port = free_port()
    with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as f:
        pickle.dump(frames, f)
        path = f.name
    # REQ/REP: the hub binds, the sender connects; PUB/SUB the other way
    # round. The delaying link sits in front of whichever binds.
    link = DelayLink(f"127.0.0.1:{port}", delay) if delay else None
    via = int(link.address.rsplit(":", 1)[1]) if link else port
    if reqrep:
        hub = imagezmq.ImageHub(open_port=f"tcp://127.0.0.1:{port}")
    else:
        hub = imagezmq.ImageHub(open_port=f"tcp://127.0.0.1:{via}", REQ_REP=False)
    hub.zmq_socket.setsockopt(zmq.RCVTIMEO, int(WAIT * 1000))  # a dead sender fails the run
    sender_port = via if reqrep else port
    sender = subprocess.Popen([sys.executable, "-c", SENDER, str(sender_port), "1" if reqrep else "0",
                               str(fps), path])
    try:
        ages, n = [], 0
        end = None
        while True:
            stamp, jpg = hub.recv_jpg()
            got = time.time()
            if end is None:  # the clock starts at the first frame
                end, cpu0, t0 = time.monotonic() + seconds, time.process_time(), time.monotonic()
            image = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None
            ages.append((got - float(stamp)) * 1e3)
            if detector:
                time.sleep(detector)
            if reqrep:
                hub.send_reply(b"OK")
            n += 1
            if time.monotonic() >= end:
                break
        elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    finally:
        sender.kill()
        sender.wait()
        hub.close()
        os.unlink(path)
        if link:
            link.close()
    return n / elapsed, ages, cpu / n * 1e3


def framelink_run(width, height, seconds, fps=0, detector=0.0, source="test-pattern", delay=0.0):
    """framelink: fps into the loop, ages at hand-off (ms), the process's CPU
    per frame (ms, all its threads) and the Python thread's CPU per frame
    in take() and reply() (ms)."""
    with framelink.Server(listen="127.0.0.1:0") as server:
        link = DelayLink(server.address, delay) if delay else None
        child = client(link.address if link else server.address, width, height, fps, source)
        try:
            server.take(timeout=WAIT).reply()  # connected
            ages, n, binding = [], 0, 0.0
            end, cpu0, t0 = time.monotonic() + seconds, time.process_time(), time.monotonic()
            while time.monotonic() < end:
                b0 = time.thread_time()
                frame = server.take(timeout=WAIT)
                b1 = time.thread_time()
                ages.append(frame.age_ms)
                image = frame.to_numpy()
                assert image.shape == (height, width, 3)
                if detector:
                    time.sleep(detector)
                b2 = time.thread_time()
                frame.reply({"n": n})
                binding += (b1 - b0) + (time.thread_time() - b2)
                n += 1
            elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
        finally:
            child.kill()
            child.wait()
            if link:
                link.close()
    return n / elapsed, ages, cpu / n * 1e3, binding / n * 1e3


@contextlib.contextmanager
def held_frames(width, height, folder, n):
    """`n` frames of `folder`'s JPEGs taken from a framelink.Server and held,
    the sender stopped, so conversions are timed on a quiet machine; each is
    answered at the end."""
    with framelink.Server(listen="127.0.0.1:0") as server:
        child = client(server.address, width, height, 0, folder)
        frames = []
        try:
            for _ in range(n):
                frames.append(server.take(timeout=WAIT))
        finally:
            child.kill()
            child.wait()
        try:
            yield frames
        finally:
            for f in frames:
                f.reply()


def decode_ms(jpegs, decode, rounds=5):
    """Median time of one decode (ms)."""
    times = []
    for _ in range(rounds):
        for j in jpegs:
            t = time.perf_counter()
            decode(j)
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def cv2_letterbox_chw(jpeg, size=640):
    """What a detector's Python code does without framelink: decode, resize
    and pad as Ultralytics' LetterBox, then RGB, channels first, float 0-1."""
    image = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    nw, nh = round(w * r), round(h * r)
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    dw, dh = (size - nw) / 2, (size - nh) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1)).astype(np.float32) / 255.0


def model_input(frames, size=640):
    """Median ms of a 640x640 letterboxed CHW float32 input: framelink's
    to_numpy(size=...) and the OpenCV + numpy way, on the same frames."""
    ours = decode_ms(frames, lambda f: f.to_numpy(size=size, rgb=True, layout="chw", dtype="float32"))
    theirs = decode_ms(frames, lambda f: cv2_letterbox_chw(f.jpeg, size))
    a = frames[0].to_numpy(size=size, rgb=True, layout="chw", dtype="float32")
    b = cv2_letterbox_chw(frames[0].jpeg, size)
    assert a.shape == b.shape == (3, size, size), (a.shape, b.shape)
    return ours, theirs, float(np.abs(a - b).mean() * 255)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="each throughput run")
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="each detector run")
    parser.add_argument("--model-input-only", action="store_true", help="only the model input section")
    args = parser.parse_args()
    if args.model_input_only:
        model_input_section()
        return
    print(f"# framelink (Python) against imageZMQ {imagezmq.__version__}\n")
    print(f"{os.cpu_count()} cores; loopback; JPEG quality 80; sender and receiver in separate processes.\n")

    print("## Frames a second into a Python loop that decodes each one to numpy\n")
    print("| size | link | framelink | imageZMQ REQ/REP | imageZMQ PUB/SUB | framelink ÷ REQ/REP "
          "| receiver CPU/frame: framelink · REQ/REP · PUB/SUB |")
    print("|---|---|---|---|---|---|---|")
    details = []
    for width, height in SIZES:
        jpegs = test_pattern_jpegs(width, height)
        folder = jpeg_folder(jpegs)
        for delay, link in ((0.0, "loopback"), (0.010, "20 ms RTT")):
            fl_fps, _, fl_cpu, fl_bind = framelink_run(width, height, args.seconds, source=folder, delay=delay)
            rr_fps, _, rr_cpu = zmq_run(jpegs, True, args.seconds, delay=delay)
            ps_fps, _, ps_cpu = zmq_run(jpegs, False, args.seconds, delay=delay)
            print(f"| {width}×{height} | {link} | {fl_fps:.0f} | {rr_fps:.0f} | {ps_fps:.0f} "
                  f"| {fl_fps / rr_fps:.2f}× | {fl_cpu:.2f} · {rr_cpu:.2f} · {ps_cpu:.2f} ms |")
            if not delay:
                details.append((width, height, jpegs, folder, fl_bind))

    print("\n## The binding's own cost per frame (decodes timed with the sender stopped)\n")
    print("| size | JPEG | take() + reply() on the Python thread | to_numpy() | cv2.imdecode(frame.jpeg) |")
    print("|---|---|---|---|---|")
    for width, height, jpegs, folder, fl_bind in details:
        with held_frames(width, height, folder, len(jpegs)) as frames:
            ours = decode_ms(frames, lambda f: f.to_numpy())
            theirs = decode_ms(frames, lambda f: cv2.imdecode(f.jpeg, cv2.IMREAD_COLOR))
        size = statistics.mean(len(j) for j in jpegs) / 1e3
        print(f"| {width}×{height} | {size:.0f} kB | {fl_bind:.3f} ms | {ours:.2f} ms | {theirs:.2f} ms |")
        shutil.rmtree(folder)

    model_input_section()

    print("\n## Age of the frame a 100 ms detector is handed (camera at 30 fps, 640×480)\n")
    print("| | frames handed/s | age p50 | age p99 | age max |")
    print("|---|---|---|---|---|")
    jpegs = test_pattern_jpegs(640, 480)
    runs = [
        ("framelink (max_latency_ms 80)", framelink_run(640, 480, args.latency_seconds, 30, 0.1)[:2]),
        ("imageZMQ REQ/REP", zmq_run(jpegs, True, args.latency_seconds, 30, 0.1)[:2]),
        ("imageZMQ PUB/SUB", zmq_run(jpegs, False, args.latency_seconds, 30, 0.1)[:2]),
    ]
    for name, (fps, ages) in runs:
        print(f"| {name} | {fps:.1f} | {pct(ages, 50):.1f} ms | {pct(ages, 99):.1f} ms | {max(ages):.1f} ms |")


def model_input_section():
    print("\n## A detector's input: 640×640 letterboxed, RGB, CHW float32 0–1\n")
    print(f"OpenCV {cv2.__version__}: `cv2.imdecode` + `cv2.resize` + `cv2.copyMakeBorder` + transpose and scale in numpy, "
          "against `frame.to_numpy(size=640, rgb=True, layout=\"chw\", dtype=\"float32\")`; median of the same frames, "
          "one Python thread.\n")
    print("| frame | framelink | OpenCV + numpy | framelink ÷ OpenCV | mean difference (levels of 255) |")
    print("|---|---|---|---|---|")
    for width, height in SIZES:
        jpegs = test_pattern_jpegs(width, height)
        folder = jpeg_folder(jpegs)
        with held_frames(width, height, folder, len(jpegs)) as frames:
            ours, theirs, diff = model_input(frames)
        print(f"| {width}×{height} | {ours:.2f} ms | {theirs:.2f} ms | {ours / theirs:.2f}× | {diff:.2f} |")
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
