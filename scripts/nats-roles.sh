#!/usr/bin/env bash
# Runs nats-server with the fleet's roles (deploy/nats/server.conf) after checking that every
# password variable is set, non-empty and made of characters the config parser takes as a
# plain string: nats-server itself would start with an empty password and accept it.
#   scripts/nats-roles.sh -p 4222 -sd /var/lib/nats
set -euo pipefail
cd "$(dirname "$0")/.."
for user in WORKER TRADER VIEWER OPERATOR ACME GLOBEX; do
  var="AI_FAILOVER_${user}_PASSWORD"
  value="${!var:-}"
  if [[ -z "$value" ]]; then
    echo "error: $var is not set or empty; fix: export $var=\$(openssl rand -hex 24)" >&2
    exit 2
  fi
  if [[ ! "$value" =~ ^[A-Za-z0-9._+/=-]+$ || "$value" =~ ^[0-9.]+$ || "$value" == true || "$value" == false ]]; then
    echo "error: $var has characters (or a shape, e.g. a bare number) nats-server's config parser does not read as a password; fix: use letters, digits and -_.+/= (e.g. openssl rand -hex 24)" >&2
    exit 2
  fi
done
PATH="$(scripts/install-nats.sh):$PATH"
exec nats-server -c deploy/nats/server.conf "$@"
