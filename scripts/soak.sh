#!/usr/bin/env bash
# The soak: 3 worker processes, 50 req/s, a rotating mix of provider faults, one worker
# restarted every 3 minutes; reports lost/duplicated, RSS and descriptors over time, KV keys,
# stream sizes and p99 per 5-minute window.
#   scripts/soak.sh [--minutes N] [--rate R] [--json F]     (default 30 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(scripts/install-nats.sh):$PATH"
export PATH
cargo build --release --quiet
exec target/release/ai-failover bench soak "$@"
