#!/usr/bin/env bash
# A long fuzz run of request decoding and provider-answer parsing (the suite runs a short one).
set -euo pipefail
cd "$(dirname "$0")/.."
PROPTEST_CASES="${PROPTEST_CASES:-200000}" cargo test --release --test fuzz -- --nocapture
