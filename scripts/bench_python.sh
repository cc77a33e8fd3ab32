#!/usr/bin/env bash
# framelink's Python package against imageZMQ (REQ/REP and PUB/SUB): frames
# a second into a Python loop decoding to numpy at 640×480 and 1920×1080,
# the age of what a 100 ms detector is handed, the binding's CPU per frame.
# Builds the programs and the package in release mode; about 2 minutes.
# The report (Markdown) goes to standard output and bench-python-report.md.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
# OpenCV: what imageZMQ's users decode with (the bench only).
target/py-venv/bin/python -c 'import cv2' 2>/dev/null \
    || target/py-venv/bin/pip install -q --disable-pip-version-check opencv-python-headless
cargo build --release --bins --quiet
VIRTUAL_ENV="$PWD/target/py-venv" target/py-venv/bin/maturin develop --release --quiet -m python/Cargo.toml
RUST_LOG=warn target/py-venv/bin/python scripts/bench_python.py "$@" | tee bench-python-report.md
