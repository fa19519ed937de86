#!/usr/bin/env bash
# The main job on a fresh machine: installs nats-server if needed, builds, and runs the live
# demo (nats-server with JetStream, the provider simulator, three workers, steady traffic,
# an outage of the top provider and its recovery, then a summary). Extra flags go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(scripts/install-nats.sh):$PATH"
export PATH
exec cargo run --quiet --bin ai-failover -- demo "$@"
