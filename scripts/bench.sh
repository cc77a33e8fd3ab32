#!/usr/bin/env bash
# The benchmark: framelink against the reference Python pair, side by side.
# Installs the reference pair's Python packages if missing, builds in release,
# runs framelink-bench and writes its report to bench-report.md.
# Usage: scripts/bench.sh [framelink-bench flags, e.g. --seconds 10]
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
if ! python3 -c "import cv2, numpy" 2>/dev/null; then
    echo "bench: installing the reference pair's packages (opencv-python-headless, numpy)"
    python3 -m pip install --quiet opencv-python-headless numpy
fi
cargo build --release --quiet --features testkit
./target/release/framelink-bench --out bench-report.md "$@"
