#!/usr/bin/env bash
# Fuzzes everything framelink decodes from the network (fuzz/fuzz_targets/decode.rs:
# the protocol decoder, the JPEG checks, the server's frame check and the JPEG
# decoder) for a bounded time with cargo-fuzz (libFuzzer), on the nightly toolchain.
#   scripts/fuzz.sh [SECONDS]     (default 600; CI runs it briefly)
# A crash, a panic or an allocation past 1 GiB leaves its input under
# fuzz/artifacts/decode/ and fails the script. The run starts from the seeds
# in fuzz/seeds/ (small real JPEGs, one claiming 60000 x 60000, one whose
# DC arithmetic overflows the pure-Rust decoder, and a
# protocol stream), so even a short run reaches the decoders.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
command -v rustup >/dev/null || { echo "fuzz: needs rustup (https://rustup.rs)" >&2; exit 1; }
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: installing the nightly toolchain (cargo-fuzz needs it)"
    rustup toolchain install nightly --profile minimal || {
        echo "fuzz: the nightly toolchain is not installed and cannot be installed here" >&2
        exit 1
    }
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p fuzz/corpus/decode
# The instrumented build is kept between runs, also across fresh clones on
# one machine (CI): only what changed is rebuilt.
target=${FRAMELINK_FUZZ_TARGET:-${XDG_CACHE_HOME:-$HOME/.cache}/framelink/fuzz-target}
mkdir -p "$target"
cargo +nightly fuzz run --target-dir "$target" decode fuzz/corpus/decode fuzz/seeds -- \
    -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=1024 -print_final_stats=1
