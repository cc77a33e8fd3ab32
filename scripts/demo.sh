#!/usr/bin/env bash
# One command for the main job on one machine: a server and a test-pattern
# client over loopback. With a display you get the window; without one, the
# status lines. Usage: scripts/demo.sh [SECONDS] (default 20; Ctrl-C stops).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
port="${FRAMELINK_DEMO_PORT:-1998}"

./scripts/setup.sh
cargo build --release --quiet

display_flag=()
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    echo "demo: no display: running headless, status lines only"
    display_flag=(--no-display)
fi

./target/release/framelink-server --listen "127.0.0.1:$port" "${display_flag[@]}" --duration "$((seconds + 2))" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT INT TERM
./target/release/framelink-client --source test-pattern --width 640 --height 480 --duration "$seconds" --name demo "127.0.0.1:$port"
wait $server
