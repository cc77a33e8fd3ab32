#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test framelink:
#   libclang-dev  nokhwa's V4L2 bindings are generated with bindgen (camera feature)
#   pkg-config    finding system libraries
#   cmake nasm    building libjpeg-turbo (the turbojpeg feature)
#   xvfb x11-apps a virtual display and xwd, for the window test
#   chromium      headless browser, for the live view test
#   python3       the shipped exec processor example (if no python3 is on PATH)
# Rust itself (cargo) must already be installed: https://rustup.rs
set -euo pipefail

packages=(libclang-dev pkg-config cmake nasm xvfb x11-apps chromium ffmpeg)
command -v python3 >/dev/null || packages+=(python3)

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

command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
echo "setup: ready ($(cargo --version))"
