#!/usr/bin/env python3
"""A framelink pool worker in Python, written from protocol.md's NATS section.

    pip install nats-py            # and Pillow or opencv-python to decode, if you like
    python3 examples/nats/worker.py --nats nats://127.0.0.1:4222

It asks the servers for a frame when it is free, runs `process()` on it and
publishes the result. Put your detector in `process()`: it gets the JPEG
bytes and the frame's headers and returns a JSON-able value (or raises).

With Pillow or OpenCV installed the frame is decoded and the mean
brightness is reported too; without either, only what the headers say.
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import time

import nats
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

try:  # optional decoders
    import io

    from PIL import Image  # type: ignore
except ImportError:
    Image = None
try:
    import cv2  # type: ignore
    import numpy  # type: ignore
except ImportError:
    cv2 = None


def decode_mean(jpeg):
    """The mean brightness of the frame, if a decoder is installed."""
    if cv2 is not None:
        img = cv2.imdecode(numpy.frombuffer(jpeg, numpy.uint8), cv2.IMREAD_GRAYSCALE)
        return None if img is None else float(img.mean())
    if Image is not None:
        img = Image.open(io.BytesIO(jpeg)).convert("L")
        data = img.tobytes()
        return sum(data) / max(1, len(data))
    return None


def process(jpeg, headers, worker):
    """Your algorithm goes here. Return a JSON-able value, or raise."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    out = {
        "worker": worker,
        "client": headers.get("Framelink-Client-Name", ""),
        "frame_id": int(headers["Framelink-Frame-Id"]),
        "width": int(headers["Framelink-Width"]),
        "height": int(headers["Framelink-Height"]),
        "jpeg_bytes": len(jpeg),
    }
    mean = decode_mean(jpeg)
    if mean is not None:
        out["mean"] = round(mean, 2)
    return out


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nats", default="nats://127.0.0.1:4222", help="the NATS broker the servers use")
    ap.add_argument("--prefix", default="framelink", help="subject prefix (the servers' --nats-prefix)")
    ap.add_argument("--name", default=f"{socket.gethostname()}-py-{os.getpid()}", help="this worker's name")
    ap.add_argument("--wait-ms", type=int, default=1000, help="how long a server may hold a request")
    args = ap.parse_args()

    nc = await nats.connect(args.nats, name=f"framelink-worker {args.name}", max_reconnect_attempts=-1)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    done = failed = 0
    print(f"python worker {args.name} taking frames from {args.nats}", flush=True)
    while not stop.is_set():
        try:
            msg = await nc.request(
                f"{args.prefix}.work",
                b"",
                timeout=args.wait_ms / 1000 + 2,
                headers={"Framelink-Worker": args.name, "Framelink-Wait-Ms": str(args.wait_ms)},
            )
        except NoRespondersError:  # no server is taking work: ask again soon
            await asyncio.sleep(0.25)
            continue
        except NatsTimeout:  # a server died holding our request
            continue
        headers = msg.headers or {}
        if headers.get("Framelink-Status") == "idle":
            continue
        if "Framelink-Results" not in headers or "Framelink-Token" not in headers:
            continue  # nowhere to answer: the server's deadline answers it
        started = time.monotonic()
        reply = {
            "Framelink-Token": headers["Framelink-Token"],
            "Framelink-Frame-Id": headers.get("Framelink-Frame-Id", ""),
            "Framelink-Worker": args.name,
        }
        try:
            result = process(msg.data, headers, args.name)
            reply.update({"Framelink-Status": "processed", "Framelink-Kind": "json"})
            body = json.dumps(result).encode()
            done += 1
        except Exception as e:  # the frame fails, the worker goes on
            reply.update({"Framelink-Status": "failed", "Framelink-Kind": "text"})
            body = f"python worker: {e}".encode()
            failed += 1
        reply["Framelink-Processing-Us"] = str(int((time.monotonic() - started) * 1e6))
        await nc.publish(headers["Framelink-Results"], body, headers=reply)
    await nc.drain()
    print(f"summary: {done} frames processed, {failed} failed", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
