#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test framelink:
#   libclang-dev  nokhwa's V4L2 bindings are generated with bindgen (camera feature)
#   pkg-config    finding system libraries
#   cmake nasm    building libjpeg-turbo (the turbojpeg feature)
#   xvfb x11-apps a virtual display and xwd, for the window test
#   chromium      headless browser, for the live view test
#   python3       the shipped exec processor example (if no python3 is on PATH)
#   ffmpeg        an MJPEG stream on standard input, for the source tests
#   nats-server   a real broker for the worker pool tests
#   nats-py       (PyPI) the Python pool worker example, and its test
#   systemd       systemd-socket-activate and systemd-analyze, for the service
#                 tests (no systemd needs to run)
#   man-db        man, to check the packaged man pages render
#   python3-venv  target/py-venv: the Python package's build (maturin) and
#                 test tools (pytest, numpy; imagezmq and pyzmq for its benchmark)
# Rust itself (cargo) must already be installed: https://rustup.rs
set -euo pipefail

packages=(libclang-dev pkg-config cmake nasm xvfb x11-apps chromium ffmpeg nats-server python3-venv systemd man-db)
command -v python3 >/dev/null || packages+=(python3 python3-pip)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "setup: run as root or install sudo to install: ${missing[*]}" >&2; exit 1; }
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Python pool worker's NATS client.
if ! python3 -c 'import nats' 2>/dev/null; then
    echo "setup: installing nats-py (pip)"
    python3 -m pip install -q --disable-pip-version-check nats-py 2>/dev/null \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages nats-py
fi

# The Python package's build and test tools, in a virtual environment of
# their own (never the system's Python).
mkdir -p target
# Its real path: target/ may be a link to a cache (.ci/run), and a venv's
# scripts name the path it was made at.
venv="$(cd target && pwd -P)/py-venv"
python_tools=('maturin>=1.16,<2' numpy pytest nats-py 'imagezmq>=1.2' pyzmq)
if ! "$venv/bin/python" -c 'import maturin, numpy, pytest, nats, zmq, imagezmq' 2>/dev/null; then
    echo "setup: making $venv (${python_tools[*]})"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${python_tools[@]}"
fi

command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
echo "setup: ready ($(cargo --version))"
