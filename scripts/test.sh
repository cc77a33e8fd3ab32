#!/usr/bin/env bash
# The project's test command: installs what is missing, checks formatting,
# runs every test, then the window test under a virtual X display.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo fmt --check || { echo "test: run 'cargo fmt' to format the code" >&2; exit 1; }
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets
# The window test needs Xvfb; it is ignored by a plain `cargo test`.
cargo test --test window -- --ignored
