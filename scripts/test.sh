#!/usr/bin/env bash
# The project's test command: installs what is missing, checks formatting,
# runs every test, then the window test under a virtual X display and the
# live view test in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo fmt --check || { echo "test: run 'cargo fmt' to format the code" >&2; exit 1; }
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets
# The window and browser tests need Xvfb and Chromium; a plain `cargo test` ignores them.
cargo test --test window --test browser -- --ignored
