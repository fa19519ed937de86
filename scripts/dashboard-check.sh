#!/usr/bin/env bash
# End-to-end check of the worker's dashboard in a real headless browser.
#
# Starts nats-server, the provider simulator and one worker (the built binary, a temporary
# config with 2-second history intervals); sends steady traffic for 20 s, then puts `openai`
# into a full outage for 25 s more, so the worker fails over to anthropic; then loads
# http://127.0.0.1:PORT/?range=15m in headless Chromium and asserts that the page's
# JavaScript rendered the provider cards, the fleet mode, failover rows and the history
# charts (success rate, p95, spend, the mode timeline). Writes a screenshot to
# docs/dashboard.png (or $SCREENSHOT).
#
#   scripts/dashboard-check.sh            # builds with cargo first
#   WORKER_BIN=path/to/ai-failover scripts/dashboard-check.sh   # skip the build
#
# Installs Debian's `chromium` with apt-get when /usr/bin/chromium is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCREENSHOT=${SCREENSHOT:-$ROOT/docs/dashboard.png}

log() { printf '[dashboard-check] %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

# --- tools --------------------------------------------------------------------------------
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  log "installing chromium (apt-get)"
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y chromium >&2; else sudo apt-get install -y chromium >&2; fi
fi
PATH="$(scripts/install-nats.sh):$PATH"
export PATH
if [ -z "${WORKER_BIN:-}" ]; then
  log "building ai-failover"
  cargo build ${CARGO_BUILD_JOBS:+-j "$CARGO_BUILD_JOBS"} --bin ai-failover >&2
  WORKER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/ai-failover"
fi
[ -x "$WORKER_BIN" ] || fail "no binary at $WORKER_BIN"

# --- scratch space and clean-up -------------------------------------------------------------
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  # Only the processes this script started, by pid.
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP_WORK:-0}" = 1 ]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NATS_PORT=$(free_port); SIM_PORT=$(free_port); HTTP_PORT=$(free_port)
BASE="http://127.0.0.1:$HTTP_PORT"

wait_for() {  # $1 = description, $2 = seconds, rest = command
  local what=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  fail "timed out waiting for $what"
}

# --- nats-server, simulator, worker ---------------------------------------------------------
log "nats-server on $NATS_PORT"
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" --store_dir "$WORK/js" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
wait_for "nats-server" 20 grep -q "Server is ready" "$WORK/nats.log"

log "simulator on $SIM_PORT"
"$WORKER_BIN" simulate --listen "127.0.0.1:$SIM_PORT" \
  --provider openai=openai --provider anthropic=anthropic --provider gemini=gemini \
  --faults 'openai={"latency_ms":{"min":30,"max":90}}' \
  --faults 'anthropic={"latency_ms":{"min":40,"max":120}}' \
  --faults 'gemini={"latency_ms":{"min":60,"max":160}}' \
  --seed 7 >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
wait_for "simulator" 20 curl -sf "http://127.0.0.1:$SIM_PORT/_sim/providers"

cat >"$WORK/config.toml" <<EOF
[nats]
url = "nats://127.0.0.1:$NATS_PORT"

[worker]
http_listen = "127.0.0.1:$HTTP_PORT"
ack_wait_ms = 10000
default_deadline_ms = 15000

[engine]
hedging = false

[breaker]
consecutive_failures = 3

[history]
interval_ms = 2000
grace_ms = 1000

[[providers]]
id = "openai"
api = "openai"
base_url = "http://127.0.0.1:$SIM_PORT/openai/v1"
api_key_env = "SIM_OPENAI_KEY"
models = ["gpt-4.1", "gpt-4.1-mini"]
priority = 1
timeout_ms = 3000
cost = { input_per_mtok = 2.0, output_per_mtok = 8.0 }
daily_budget_usd = 50.0

[[providers]]
id = "anthropic"
api = "anthropic"
base_url = "http://127.0.0.1:$SIM_PORT/anthropic"
api_key_env = "SIM_ANTHROPIC_KEY"
models = ["claude-sonnet-4-5"]
priority = 2
timeout_ms = 3000
cost = { input_per_mtok = 3.0, output_per_mtok = 15.0 }
daily_budget_usd = 20.0

[[providers]]
id = "gemini"
api = "gemini"
base_url = "http://127.0.0.1:$SIM_PORT/gemini"
api_key_env = "SIM_GEMINI_KEY"
models = ["gemini-2.5-flash"]
priority = 3
timeout_ms = 3000
cost = { input_per_mtok = 0.3, output_per_mtok = 2.5 }
EOF

log "worker, dashboard on $BASE"
SIM_OPENAI_KEY=sim SIM_ANTHROPIC_KEY=sim SIM_GEMINI_KEY=sim RUST_LOG=info \
  "$WORKER_BIN" worker --config "$WORK/config.toml" --id dashboard-check --log-format json \
  >"$WORK/worker.log" 2>&1 &
PIDS+=($!)
wait_for "/readyz" 30 curl -sf "$BASE/readyz"

# --- traffic --------------------------------------------------------------------------------
# Core-NATS HPUB (the stream captures the subject); stdlib only, so nothing to install.
# Five requests a second for $1 seconds, ids dash-<first>.. upwards.
publish() {
python3 - "$NATS_PORT" "$1" "$2" <<'PY'
import json, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.recv(4096)  # INFO
s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n')
syms = ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "GOOG"]
first, secs = int(sys.argv[3]), int(sys.argv[2])
for i in range(first, first + secs * 5):
    rid = f"dash-{i:03d}"
    body = json.dumps({"request_id": rid, "kind": "signal", "symbol": syms[i % 6] + str(i),
                       "context": {"prices": [100 + j for j in range(10)]},
                       "allow_fallback": True}).encode()
    hdr = (f"NATS/1.0\r\nNats-Msg-Id: {rid}\r\n"
           f"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4{i % 1000:03d}-00f067aa0ba902b7-01\r\n\r\n").encode()
    s.sendall(b"HPUB ai.analysis.request.signal %d %d\r\n" % (len(hdr), len(hdr) + len(body))
              + hdr + body + b"\r\n")
    time.sleep(0.2)
s.sendall(b"PING\r\n")
buf = b""
while b"PONG" not in buf:
    buf += s.recv(4096)
PY
}
log "traffic for 20 s, all providers healthy"
publish 20 0
log "openai in a full outage; traffic for 25 s more"
curl -sf -X POST "http://127.0.0.1:$SIM_PORT/_sim/providers/openai/outage" >/dev/null \
  || fail "cannot start the outage"
publish 25 100

has_failover() { curl -sf "$BASE/api/history?limit=100" | grep -q '"type":"failover"'; }
wait_for "a failover event" 30 has_failover
answered() { curl -sf "$BASE/metrics" | grep -q '^ai_failover_requests_total'; }
wait_for "answered requests in /metrics" 30 answered
# The last interval's rollup (2 s intervals, written 1 s after each ends).
sleep 3

# --- the browser ----------------------------------------------------------------------------
chrome() {
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --user-data-dir="$(mktemp -d -p "$WORK")" "$@" 2>>"$WORK/chromium.log"
}
log "rendering $BASE/ in headless chromium"
# `?live_ms=3000`: the page's live feed (SSE) closes after 3 s, else the browser's virtual
# clock never moves past the open request and the snapshot never comes.
URL="$BASE/?live_ms=3000&range=15m"
chrome --virtual-time-budget=8000 --dump-dom "$URL" >"$WORK/dom.html"

cards=$(grep -o 'class="card" data-provider="[a-z]*"' "$WORK/dom.html" | wc -l)
mode=$(sed -n 's/.*<section id="mode" data-mode="\([a-z]*\)".*/\1/p' "$WORK/dom.html" | head -1)
rows=$(grep -o '<tr class="failover-row[^"]*" data-request-id="dash-' "$WORK/dom.html" | wc -l)
log "rendered: $cards provider card(s), mode '$mode', $rows failover row(s)"
[ "$cards" -eq 3 ] || fail "expected 3 provider cards"
[ -n "$mode" ] || fail "the fleet mode was not rendered"
[ "$rows" -ge 1 ] || fail "no failover row rendered"
grep -q 'data-provider="openai" data-status="unhealthy"' "$WORK/dom.html" \
  || fail "openai (in an outage) is not shown unhealthy"
grep -q '<td class="rid">dash-' "$WORK/dom.html" || fail "failover rows lack request ids"
grep -q '<body data-live="seen">' "$WORK/dom.html" || fail "the live feed (/api/events) never connected"
for chart in success p95 spend modes; do
  grep -q "data-chart=\"$chart\"" "$WORK/dom.html" || fail "the $chart chart was not drawn"
done
lines=$(grep -o '<path d="M[^"]*" stroke="[^"]*" data-provider="anthropic"' "$WORK/dom.html" | wc -l)
[ "$lines" -ge 3 ] || fail "anthropic's history lines were not drawn ($lines)"
grep -q 'class="mode-span" data-mode="normal"' "$WORK/dom.html" || fail "no normal span in the mode timeline"
grep -q 'class="mode-span" data-mode="degraded"' "$WORK/dom.html" || fail "the outage's degraded span is missing"
log "rendered: history charts with $lines anthropic lines and the mode timeline"

mkdir -p "$(dirname "$SCREENSHOT")"
chrome --virtual-time-budget=8000 --hide-scrollbars --window-size=1280,1250 \
  --screenshot="$SCREENSHOT" "$URL" >/dev/null
[ -s "$SCREENSHOT" ] || fail "no screenshot written"
log "screenshot: $SCREENSHOT"
log "OK"
