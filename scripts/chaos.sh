#!/usr/bin/env bash
# The long chaos run: a few thousand requests through three workers killed at random.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(scripts/install-nats.sh):$PATH"
export PATH
CHAOS_REQUESTS="${CHAOS_REQUESTS:-3000}" cargo test --test chaos -- --nocapture
