#!/usr/bin/env bash
# Builds the .deb packages into target/debian/ with cargo-deb (installed here
# if missing): framelink_VERSION_amd64.deb from a native build and
# framelink_VERSION_arm64.deb from the aarch64 cross build (scripts/cross.sh's
# tools). Each holds the three programs, their man pages and shell
# completions (generated from the same option definitions), the systemd units
# and the docs.
#   scripts/package.sh [--arch amd64|arm64|both] [--profile release|dev] [--check]
# --check installs the amd64 package with dpkg -i (as root) and checks it: the
# programs answer, `man framelink-server` renders, systemd-analyze verify
# passes on the installed units; the arm64 one is unpacked, its files are
# checked and its programs answer under qemu-aarch64. CI runs `--arch amd64 --profile dev --check`:
# the packaging is what it checks, and the test build is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=both profile=release check=0
while (($#)); do
    case $1 in
        --arch) arch=$2; shift 2 ;;
        --profile) profile=$2; shift 2 ;;
        --check) check=1; shift ;;
        *) echo "package: unknown option $1" >&2; exit 2 ;;
    esac
done
command -v cargo-deb >/dev/null || {
    echo "package: installing cargo-deb"
    cargo install cargo-deb --locked --quiet
}
profile_dir() { [[ $profile == dev ]] && echo debug || echo "$profile"; }
bins=(--bin framelink-server --bin framelink-client --bin framelink-worker)

# The man pages and completions, from a native build's --generate.
cargo build --quiet --profile "$profile" "${bins[@]}"
gen=target/debian/gen
rm -rf "$gen" && mkdir -p "$gen"/{man,bash,zsh,fish}
for p in framelink-server framelink-client framelink-worker; do
    exe="target/$(profile_dir)/$p"
    "$exe" --generate man >"$gen/man/$p.1"
    "$exe" --generate bash >"$gen/bash/$p"
    "$exe" --generate zsh >"$gen/zsh/_$p"
    "$exe" --generate fish >"$gen/fish/$p.fish"
done

debs=()
if [[ $arch == amd64 || $arch == both ]]; then
    debs+=("$(cargo deb --no-build --profile "$profile" --fast --quiet)")
fi
if [[ $arch == arm64 || $arch == both ]]; then
    target=aarch64-unknown-linux-gnu
    # scripts/cross.sh installs the cross tools; the same settings here.
    ./scripts/cross.sh --tools-only
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include"
    cargo build --quiet --profile "$profile" --target "$target" "${bins[@]}"
    debs+=("$(cargo deb --no-build --profile "$profile" --target "$target" --fast --quiet)")
fi
for d in "${debs[@]}"; do
    echo "package: $d ($(du -h "$d" | cut -f1))"
done

if ((check)) && [[ $arch == arm64 || $arch == both ]]; then
    # The arm64 package cannot be installed here: its files are checked, and
    # its programs run under qemu-aarch64.
    deb=$(ls target/debian/framelink_*_arm64.deb | head -1)
    root=$(mktemp -d)
    dpkg-deb -x "$deb" "$root"
    for f in usr/bin/framelink-server usr/bin/framelink-client usr/bin/framelink-worker \
        usr/share/man/man1/framelink-server.1.gz lib/systemd/system/framelink-server.service \
        lib/systemd/system/framelink-client@.service usr/share/bash-completion/completions/framelink-client; do
        [[ -e $root/$f ]] || { echo "package: $deb lacks /$f" >&2; exit 1; }
    done
    for p in framelink-server framelink-client framelink-worker; do
        qemu-aarch64 -L /usr/aarch64-linux-gnu "$root/usr/bin/$p" --version
    done
    echo "package: $deb holds the programs, man pages, completions and units; its programs answer under qemu-aarch64"
fi

if ((check)) && [[ $arch == amd64 || $arch == both ]]; then
    deb=$(ls target/debian/framelink_*_amd64.deb | head -1)
    sudo=""
    [[ $(id -u) == 0 ]] || sudo=sudo
    $sudo dpkg -i "$deb" >/dev/null
    dpkg -L framelink | grep -q '^/lib/systemd/system/framelink-server.service$'
    framelink-server --version
    framelink-client --version
    framelink-worker --version
    man -P cat framelink-server 2>/dev/null | grep -q -- '--max-latency-ms' ||
        { echo "package: man framelink-server does not render" >&2; exit 1; }
    # An instance of the client template, as systemd would make it.
    inst=$(mktemp -d)/framelink-client@cam.service
    cp /lib/systemd/system/framelink-client@.service "$inst"
    systemd-analyze verify /lib/systemd/system/framelink-server.service \
        /lib/systemd/system/framelink-server.socket "$inst"
    echo "package: $deb installs; the programs answer, man renders, the units verify"
fi
