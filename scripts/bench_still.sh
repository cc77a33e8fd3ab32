#!/usr/bin/env bash
# --drop-same-frames on a still scene and a moving one (not in CI): the
# client's CPU time and the bytes it sent, with and without it, at 640x480
# 30 fps for SECONDS each. Still raw frames: one PNG (decoded, then encoded
# as a camera's raw frames are); still camera JPEGs: one JPEG file (passed
# through as a camera's MJPEG is); moving: the test pattern.
#   scripts/bench_still.sh [SECONDS]     (default 15)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
cargo build --release --quiet --bin framelink-server --bin framelink-client
bin=$PWD/target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
hz=$(getconf CLK_TCK)
port=$((20000 + RANDOM % 20000))
"$bin/framelink-server" --listen "127.0.0.1:$port" --no-display --stats-interval 0 \
    >"$work/server.log" 2>&1 &
sleep 1

# One still picture, as PNG and as JPEG.
python3 - "$work" <<'PY'
import struct, sys, zlib
w, h = 640, 480
rows = b"".join(
    b"\x00" + b"".join(bytes(((x * 255) // w, (y * 255) // h, (x ^ y) & 255)) for x in range(w))
    for y in range(h))
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
open(sys.argv[1] + "/still.png", "wb").write(png)
PY
# The JPEG: the PNG encoded once by the client's own encoder, kept by a server's recording.
"$bin/framelink-server" --listen "127.0.0.1:$((port + 1))" --no-display --stats-interval 0 \
    --record "$work/rec" >/dev/null 2>&1 &
rec=$!
sleep 1
"$bin/framelink-client" "127.0.0.1:$((port + 1))" --source "$work/still.png" --fps 5 \
    --duration 2 --stats-interval 0 >/dev/null 2>&1 || true
kill -INT $rec
wait $rec 2>/dev/null || true
cp "$(find "$work/rec" -name '*.jpg' | head -1)" "$work/still.jpg"

printf '%-22s %-17s %8s %9s %13s %12s\n' scene drop-same-frames sent/s KB/s "client CPU %" "ms/captured"
run() { # NAME SOURCE
    local name=$1 source=$2
    for drop in off 30; do
        local extra=()
        [[ $drop == off ]] || extra=(--drop-same-frames "$drop")
        "$bin/framelink-client" "127.0.0.1:$port" --source "$source" --width 640 --height 480 \
            --fps 30 --duration "$secs" --stats-interval 0 --summary-json "$work/c.json" \
            "${extra[@]}" >/dev/null 2>&1 &
        local c=$! t=0
        # The client's CPU (user + system) as last seen before it exits.
        while kill -0 $c 2>/dev/null; do
            t=$(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo "$t")
            sleep 0.2
        done
        wait $c || true
        python3 - "$work/c.json" "$name" "$drop" "$t" "$hz" "$secs" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
name, drop = sys.argv[2], sys.argv[3]
cpu, secs = int(sys.argv[4]) / int(sys.argv[5]), float(sys.argv[6])
captured = s["frames_sent"] + s.get("frames_unchanged", 0) + s.get("frames_superseded", 0)
print(f"{name:<22} {drop:<17} {s['frames_sent'] / secs:8.1f} {s['bytes'] / secs / 1e3:9.1f} "
      f"{100 * cpu / secs:13.1f} {1e3 * cpu / max(1, captured):12.3f}")
PY
    done
}
run "still (raw, PNG)" "$work/still.png"
run "still (camera JPEG)" "$work/still.jpg"
run "moving (test pattern)" test-pattern
