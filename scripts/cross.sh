#!/usr/bin/env bash
# Builds framelink-client for 64-bit ARM Linux (Raspberry Pi 4/5 with a 64-bit
# OS, Jetson), with libjpeg-turbo and the camera support cross-built, and
# checks it: the pixel code's unit tests (NEON paths) run under qemu-aarch64,
# and the ARM binary runs under qemu-aarch64 and streams the test pattern to a
# native framelink-server, which must accept its frames.
#
#   scripts/cross.sh            build and check
#   scripts/cross.sh --build    build only
#   scripts/cross.sh --wheel    the Python package's aarch64 wheel (maturin, from
#                               target/py-venv) in target/wheels/, imported by an
#                               aarch64 Python under qemu-aarch64 and taking a
#                               frame from a native client (Debian's arm64
#                               python3.11 unpacked in target/aarch64-python/, the
#                               arm64 architecture added to apt for it; numpy's
#                               aarch64 wheel from PyPI). Not in the test run: it
#                               adds minutes.
#
# The binary: target/aarch64-unknown-linux-gnu/release/framelink-client (copy
# it to the device). Installs what is missing: the Rust target, Debian's
# gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user. Exits 3, saying
# why, when this machine cannot have them (not Debian, no rustup, no network).
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
cannot() {
    echo "cross: $*: the aarch64 client was not built here" >&2
    exit 3
}

command -v rustup >/dev/null || cannot "rustup is not installed (needed to add the Rust target $target)"
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" >/dev/null 2>&1 || cannot "rustup cannot add the target $target"
fi
packages=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || cannot "no apt-get to install ${missing[*]}"
    sudo=""
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || cannot "run as root or install sudo to install ${missing[*]}"
        sudo=sudo
    fi
    echo "cross: installing ${missing[*]}"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null; } || cannot "cannot install ${missing[*]}"
fi

# The cross C compiler for libjpeg-turbo (built by cmake) and the linker;
# bindgen (the V4L2 bindings) reads the ARM headers from Debian's sysroot.
# scripts/package.sh only wants the tools.
[[ ${1:-} == --tools-only ]] && exit 0
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include"
if [[ ${1:-} == --wheel ]]; then
    [[ -x target/py-venv/bin/maturin ]] || ./scripts/setup.sh
    target/py-venv/bin/maturin build --release --quiet --target "$target" -m python/Cargo.toml \
        --out target/wheels
    wheel=$(ls -t target/wheels/framelink-*-cp39-abi3-*aarch64*.whl | head -1)
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    python3 -m zipfile -e "$wheel" "$work"
    so=$(find "$work" -name '_framelink*.so' | head -1)
    file_info=$(aarch64-linux-gnu-readelf -h -d --dyn-syms "$so")
    grep -q 'Machine:.*AArch64' <<<"$file_info" || { echo "cross: $so is not an aarch64 library" >&2; exit 1; }
    grep -q 'PyInit__framelink' <<<"$file_info" || { echo "cross: $so has no PyInit__framelink" >&2; exit 1; }
    if grep -q 'NEEDED.*libpython' <<<"$file_info"; then
        echo "cross: $so links libpython (an extension module must not)" >&2
        exit 1
    fi
    echo "cross: built $wheel ($(du -h "$wheel" | cut -f1)): aarch64, abi3 (Python 3.9+), no libpython"

    # An aarch64 Python to import it: Debian's, unpacked (not installed).
    root=target/aarch64-python
    if [[ ! -x $root/usr/bin/python3.11 ]]; then
        dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
        apt-get update -qq
        mkdir -p "$root/debs" "$root/lib"
        (cd "$root/debs" && apt-get download -qq python3.11-minimal:arm64 libpython3.11-minimal:arm64 \
            libpython3.11-stdlib:arm64 libexpat1:arm64 zlib1g:arm64 libffi8:arm64 libbz2-1.0:arm64 \
            liblzma5:arm64 libssl3:arm64) || cannot "cannot download Debian's arm64 python3.11"
        for d in "$root"/debs/*.deb; do dpkg -x "$d" "$root"; done
        cp -a /usr/aarch64-linux-gnu/lib/*.so* "$root/lib/"
    fi
    site="$work/site"
    target/py-venv/bin/pip download -q --disable-pip-version-check numpy --platform manylinux2014_aarch64 \
        --python-version 3.11 --only-binary=:all: -d "$root/wheels"
    for w in "$root"/wheels/numpy-*.whl "$wheel"; do python3 -m zipfile -e "$w" "$site"; done
    cargo build --quiet --bin framelink-client
    # Under qemu: a framelink.Server takes a frame from the native client and decodes it.
    FRAMELINK_CLIENT=target/debug/framelink-client PYTHONPATH="$site" RUST_LOG=warn timeout 120 \
        qemu-aarch64 -L "$root" "$root/usr/bin/python3.11" -c '
import os, platform, subprocess, framelink
assert platform.machine() == "aarch64", platform.machine()
with framelink.Server(listen="127.0.0.1:0") as server:
    client = subprocess.Popen([os.environ["FRAMELINK_CLIENT"], server.address, "--source", "test-pattern",
                               "--width", "320", "--height", "240", "--stats-interval", "0"],
                              stderr=subprocess.DEVNULL)
    try:
        frame = server.take(timeout=60)
        assert frame is not None, "no frame within 60 s"
        image = frame.to_numpy()
        assert image.shape == (240, 320, 3), image.shape
        assert frame.reply({"arch": platform.machine()})
    finally:
        client.kill()
        client.wait()
print(f"cross: the aarch64 wheel under qemu took frame {frame.frame_id} ({image.shape[1]}x{image.shape[0]}) from a native client")
' || { echo "cross: the aarch64 wheel failed under qemu" >&2; exit 1; }
    exit 0
fi
cargo build --release --quiet --target "$target" --bin framelink-client
client="target/$target/release/framelink-client"
echo "cross: built $client ($(du -h "$client" | cut -f1))"
# Edge devices have small disks and slow links to update over: the client
# stays within 12 MB.
bytes=$(stat -c %s "$client")
if ((bytes > 12000000)); then
    echo "cross: $client is $bytes bytes, over the 12 MB budget" >&2
    exit 1
fi
[[ ${1:-} == --build ]] && exit 0

# The pixel code has ARM-only paths (NEON): its unit tests run under qemu,
# built with the release settings the client was (only framelink recompiles).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo test --release --quiet --target "$target" --lib -- media:: \
    || { echo "cross: the pixel code's tests failed on aarch64 (under qemu)" >&2; exit 1; }

# The check: the ARM client under qemu, the native server, loopback.
cargo build --quiet --bin framelink-server
work=$(mktemp -d)
trap 'kill "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
target/debug/framelink-server --listen 127.0.0.1:0 --no-display --stats-interval 0 \
    --duration 60 --summary-json "$work/server.json" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 100); do
    grep -q "listening on" "$work/server.out" 2>/dev/null && break
    sleep 0.1
done
addr=$(sed -n 's/.*listening on \([^;]*\);.*/\1/p' "$work/server.out" | head -1)
[[ -n $addr ]] || { echo "cross: the native server did not start" >&2; cat "$work/server.err" >&2; exit 1; }
timeout 60 qemu-aarch64 -L /usr/aarch64-linux-gnu "$client" "$addr" --source test-pattern \
    --width 320 --height 240 --duration 4 --stats-interval 0 --name qemu-aarch64 \
    --summary-json "$work/client.json" >/dev/null 2>"$work/client.err" \
    || { echo "cross: the aarch64 client failed under qemu:" >&2; cat "$work/client.err" >&2; exit 1; }
kill -INT "$server_pid"
wait "$server_pid" || true
accepted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["frames_accepted"])' "$work/server.json")
if ((accepted < 10)); then
    echo "cross: the native server accepted only $accepted frames from the aarch64 client" >&2
    cat "$work/client.err" >&2
    exit 1
fi
echo "cross: the aarch64 client under qemu streamed $accepted frames the native server accepted"
