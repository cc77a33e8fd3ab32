#!/usr/bin/env bash
# A/B of the server against an earlier commit, in one run: the same client
# (this checkout's, test pattern at --fps 0: as fast as it can encode) into
# each server in turn, ROUNDS times alternating, and per run the server's
# CPU per accepted frame (user + system, from /proc) and its accepted fps.
# Usage: scripts/ab_server.sh COMMIT [ROUNDS] [SECONDS] [WIDTHxHEIGHT]
# The earlier commit is built in release in target/ab/ (a worktree of its own).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: scripts/ab_server.sh COMMIT [ROUNDS] [SECONDS] [WIDTHxHEIGHT]}
rounds=${2:-3}
seconds=${3:-8}
size=${4:-640x480}
width=${size%x*}
height=${size#*x}

cargo build --release --quiet --bins
tree=target/ab/tree
if [[ ! -d $tree ]]; then
    git worktree add --detach "$tree" "$base" >/dev/null
else
    git -C "$tree" checkout --quiet --detach "$base"
fi
CARGO_TARGET_DIR="$PWD/target/ab/target" cargo build --release --quiet --bins --manifest-path "$tree/Cargo.toml"
declare -A server=([A]="$PWD/target/ab/target/release/framelink-server" [B]="$PWD/target/release/framelink-server")
client="$PWD/target/release/framelink-client"
tick=$(getconf CLK_TCK)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() { # $1: A or B; writes "cpu_ms_per_frame fps" to $out/result
    local port=$((20000 + RANDOM % 20000))
    "${server[$1]}" --listen "127.0.0.1:$port" --no-display --stats-interval 0 \
        --duration $((seconds + 4)) --summary-json "$out/s.json" >/dev/null 2>&1 &
    local pid=$!
    sleep 0.5
    "$client" "127.0.0.1:$port" --source test-pattern --width "$width" --height "$height" \
        --fps 0 --adapt off --stats-interval 0 --duration "$seconds" >/dev/null 2>&1
    local cpu
    cpu=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" || true
    python3 - "$out/s.json" "$cpu" "$tick" >"$out/result" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
cpu_ms = int(sys.argv[2]) * 1000 / int(sys.argv[3])
print(f"{cpu_ms / max(s['frames_accepted'], 1):.3f} {s['fps_accepted']:.0f}")
EOF
}

echo "| round | server | CPU per accepted frame | accepted fps |"
echo "|---|---|---|---|"
for r in $(seq 1 "$rounds"); do
    for side in A B; do
        run "$side"
        read -r cpu fps <"$out/result"
        name=$([[ $side == A ]] && echo "A $(git rev-parse --short "$base")" || echo "B $(git rev-parse --short HEAD)")
        echo "| $r | $name | $cpu ms | $fps |"
    done
done
