#!/usr/bin/env bash
# Fuzzes the protocol decoder and the JPEG checks (fuzz/fuzz_targets/decode.rs)
# for a bounded time with cargo-fuzz (libFuzzer), on the nightly toolchain.
#   scripts/fuzz.sh [SECONDS]     (default 600)
# A crash leaves its input under fuzz/artifacts/decode/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
command -v rustup >/dev/null || { echo "fuzz: needs rustup (https://rustup.rs)" >&2; exit 1; }
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p fuzz/corpus/decode
cargo +nightly fuzz run decode fuzz/corpus/decode -- -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=1024
