#!/usr/bin/env bash
# The browser camera's benchmark (not in CI): headless Chromium's fake camera
# streams from the /camera page to a server on loopback, at 640x480 and
# 1280x720: frames a second and age p50/p99 as the server judged them. Then
# the server's CPU per frame over the WebSocket against the same JPEGs (the
# page's, recorded) sent by framelink-client over TCP at the same rate.
#   scripts/bench_camera.sh [SECONDS]     (default 20 per run)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
cargo build --release --quiet
bin=$PWD/target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

# CPU time of the server's threads, in ns (schedstat; /proc/PID/stat's ticks
# are 10 ms, too coarse for the ~0.1 s a run costs). The connection's threads
# live through the measurement.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{n += $1} END {printf "%d", n}'; }
# figure HTTP NAME FIELD: a client's figure from /stats.json.
figure() {
    curl -s "http://127.0.0.1:$1/stats.json" | python3 -c '
import json, sys
s = json.load(sys.stdin)
c = [c for c in s["clients"] if c["name"] == sys.argv[1]]
v = c[0] if c else {}
for k in sys.argv[2].split("."):
    v = v.get(k, 0) if isinstance(v, dict) else 0
print(v if v is not None else 0)' "$2" "$3"
}
start_server() { # PORT HTTP EXTRA...
    local port=$1 http=$2
    shift 2
    "$bin/framelink-server" --listen "127.0.0.1:$port" --http "127.0.0.1:$http" --no-display \
        --stats-interval 0 "$@" >"$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        curl -s "http://127.0.0.1:$http/stats.json" >/dev/null && return
        sleep 0.1
    done
    echo "the server did not start: $(cat "$work/server.log")" >&2
    exit 1
}
page() { # HTTP SIZE NAME
    chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
        --use-fake-device-for-media-stream --use-fake-ui-for-media-stream \
        --autoplay-policy=no-user-gesture-required --remote-debugging-port=0 \
        --user-data-dir="$work/profile-$3" "http://127.0.0.1:$1/camera?name=$3&size=$2" \
        >/dev/null 2>&1 &
    browser=$!
}
# measure HTTP NAME: the server's CPU and the client's frames over $secs, after a warm-up.
measure() {
    for _ in $(seq 300); do
        (($(figure "$1" "$2" frames_accepted) > 30)) && break
        sleep 0.1
    done
    local t0 f0 t1 f1
    t0=$(cpu_ns "$server"); f0=$(figure "$1" "$2" frames_received)
    sleep "$secs"
    t1=$(cpu_ns "$server"); f1=$(figure "$1" "$2" frames_received)
    frames=$((f1 - f0))
    cpu_ms=$(python3 -c "print(round(($t1 - $t0) / 1e6 / max(1, $frames), 3))")
    fps=$(python3 -c "print(round($frames / $secs, 1))")
    p50=$(figure "$1" "$2" age_ms.p50)
    p99=$(figure "$1" "$2" age_ms.p99)
    bytes=$(figure "$1" "$2" bytes)
    received=$(figure "$1" "$2" frames_received)
    kb=$(python3 -c "print(round($bytes / max(1, $received) / 1024, 1))")
}

printf '%-10s %-9s %7s %9s %9s %8s %14s\n' size transport fps "age p50" "age p99" "KiB" "server ms/frame"
port=$((20000 + RANDOM % 20000))
for size in 640x480 1280x720; do
    port=$((port + 2)); http=$((port + 1))
    start_server "$port" "$http" --record "$work/rec-$size"
    page "$http" "$size" page
    measure "$http" page
    ws_fps=$fps
    printf '%-10s %-9s %7s %9s %9s %8s %14s\n' "$size" websocket "$fps" "$p50" "$p99" "$kb" "$cpu_ms"
    kill "$browser"; wait "$browser" 2>/dev/null || true
    kill -INT "$server"; wait "$server" 2>/dev/null || true

    # The same JPEGs over TCP, at the page's rate, without recording in either
    # measured run: the page again first, then the TCP client.
    port=$((port + 2)); http=$((port + 1))
    start_server "$port" "$http"
    page "$http" "$size" page2
    measure "$http" page2
    printf '%-10s %-9s %7s %9s %9s %8s %14s\n' "$size" websocket "$fps" "$p50" "$p99" "$kb" "$cpu_ms"
    ws_cpu=$cpu_ms
    kill "$browser"; wait "$browser" 2>/dev/null || true
    "$bin/framelink-client" "127.0.0.1:$port" --source "$work/rec-$size/page" --fps "$ws_fps" \
        --name tcp --stats-interval 0 >/dev/null 2>&1 &
    client=$!
    measure "$http" tcp
    printf '%-10s %-9s %7s %9s %9s %8s %14s\n' "$size" tcp "$fps" "$p50" "$p99" "$kb" "$cpu_ms"
    echo "  server CPU per frame, WebSocket / TCP: $(python3 -c "print(round($ws_cpu / max(0.001, $cpu_ms), 2))")x"
    kill -INT "$client"; wait "$client" 2>/dev/null || true
    kill -INT "$server"; wait "$server" 2>/dev/null || true
done
