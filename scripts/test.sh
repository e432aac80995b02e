#!/usr/bin/env bash
# The README's test command: builds everything (the end-to-end tests run the dormant binary) and runs every
# test of the workspace, privileged end-to-end tests included. Must run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
cargo test --release --workspace
