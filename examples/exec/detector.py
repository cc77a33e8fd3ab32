#!/usr/bin/env python3
"""A framelink `exec` processor in plain Python (standard library only).

    framelink-server --processor exec:'python3 examples/exec/detector.py' --exec-input gray

For each frame the server writes one JSON header line to our stdin, then
exactly header["bytes"] bytes of picture. We answer with one JSON line on
stdout; the server sends it back to the camera that sent the frame.

With `--exec-input gray` the bytes are width x height gray pixels, and this
finds the bright spot: the mean brightness and the box around the pixels
brighter than 200. With `--exec-input jpeg` (the default) the bytes are the
JPEG as it arrived; decode it with, for example, OpenCV:

    frame = cv2.imdecode(numpy.frombuffer(data, numpy.uint8), cv2.IMREAD_COLOR)

To send a picture back instead of JSON, print {"jpeg_bytes": N} and then
write the N bytes of JPEG.
"""
import json
import sys

STEP = 4  # look at every 4th pixel across and down: fast enough in pure Python
BRIGHT = 200


def bright_spot(gray, width, height):
    total = count = 0
    x0 = y0 = None
    x1 = y1 = 0
    for y in range(0, height, STEP):
        row = gray[y * width:(y + 1) * width:STEP]
        total += sum(row)
        count += len(row)
        for i, v in enumerate(row):
            if v > BRIGHT:
                x = i * STEP
                x0 = x if x0 is None else min(x0, x)
                y0 = y if y0 is None else y0
                x1, y1 = max(x1, x), y
    box = None if x0 is None else [x0, y0, x1 - x0 + STEP, y1 - y0 + STEP]
    return {"mean": round(total / max(count, 1), 1), "bright_box": box}


def main():
    stdin, stdout = sys.stdin.buffer, sys.stdout
    while True:
        line = stdin.readline()
        if not line:
            return  # the server closed our input: it is stopping
        header = json.loads(line)
        data = stdin.read(header["bytes"])
        if len(data) < header["bytes"]:
            return
        if header["format"] == "gray":
            result = bright_spot(data, header["width"], header["height"])
        else:
            result = {"size": len(data)}
        result["frame_id"] = header["frame_id"]
        stdout.write(json.dumps(result) + "\n")
        stdout.flush()


if __name__ == "__main__":
    main()
