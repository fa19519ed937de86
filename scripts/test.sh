#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs nats-server if needed, then runs every
# test (unit, integration against real nats-server processes, HTTP mocks and the simulator).
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(scripts/install-nats.sh):$PATH"
export PATH
nats-server --version
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
if command -v cargo-nextest >/dev/null 2>&1; then
  # One process per test: servers and environment never leak between tests.
  cargo nextest run --workspace --all-targets --no-fail-fast
  cargo test --workspace --doc
else
  cargo test --workspace --all-targets --no-fail-fast
fi
# The soak, short: 2 minutes of load, faults and worker restarts; fails on any lost or
# duplicated request (the 30-minute run is scripts/soak.sh).
cargo build --quiet --bin ai-failover
target/debug/ai-failover bench soak --minutes 2 --restart-every-s 40 --json target/soak-ci.json
