#!/usr/bin/env bash
# The README's test command: builds everything (the end-to-end tests run the dormant binary) and runs every
# test of the workspace, privileged end-to-end tests included. Must run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
cargo test --release --workspace
# The parasite's crash tests need its fault-injection hooks (the `test-hooks` feature). They run in a cargo
# invocation of their own so that the feature never reaches the dormant binary built above.
cargo test --release -p dormant-parasite --features test-hooks --test inject
