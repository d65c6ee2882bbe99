#!/usr/bin/env bash
# Intake load test on the embedded store (no REDIS_URL; issue #17): a real
# `bot serve` with DATA_DIR on local disk, signed 24 KB deliveries over
# loopback from bench/loadgen.
#   1. fixed rate 1,000 req/s → p99 (target ≤ 3 ms)
#   2. as fast as 64 connections go, in back-to-back windows on the same
#      file → req/s per window (target ≥ 8,000, flat as the file grows),
#      with the queue file's size after each
#   3. the bot restarted on that file, one more window: the next run must
#      not be slower than the first
# The workers run too (the embedded store serves one process, role all);
# GITHUB_API_URL points nowhere, so their jobs fail and retry, as in
# bench/intake.sh.
# Usage: bash bench/embedded.sh [seconds per window, default 10] [windows, default 6]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
windows=${2:-6}
out=bench/out; mkdir -p "$out"
go build -o "$out/bot" ./cmd/bot
go build -o "$out/loadgen" ./bench/loadgen

python3 bench/payload.py pull_request "$out/payload-24k.json"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
bport=$(free_port)
dir=$(mktemp -d "${TMPDIR:-/tmp}/shipbot-embedded.XXXXXX")
bot=
# `bot serve` leaves its keeper (the process that owns the local driver's
# proxies and instances) running on purpose; a benchmark stops the ones its
# bots started (by their --data-dir, so one still starting is found too).
stop_keepers() { pkill -f -- "keeper --data-dir $dir/" 2>/dev/null || true; }
cleanup() { [ -n "$bot" ] && kill "$bot" 2>/dev/null; wait 2>/dev/null || true; stop_keepers; rm -rf "$dir"; }
trap cleanup EXIT
openssl genrsa -out "$dir/key.pem" 2048 2>/dev/null

run_bot() {
  PORT=$bport APP_ID=1 WEBHOOK_SECRET=bench LOG_LEVEL=warn \
  PRIVATE_KEY_PATH="$dir/key.pem" GITHUB_API_URL=http://127.0.0.1:1 DATA_DIR="$dir/data" \
    "$out/bot" serve >>"$out/bot-embedded.log" 2>&1 &
  bot=$!
  until curl -sf "http://127.0.0.1:$bport/healthz" >/dev/null; do sleep 0.05; done
}
stop_bot() { kill "$bot"; wait "$bot" 2>/dev/null || true; bot=; }
size() { du -m --apparent-size "$dir/data/shipbot.db" | cut -f1; }
load() { "$out/loadgen" -url "http://127.0.0.1:$bport/webhooks" -secret bench -payload "$out/payload-24k.json" "$@"; }

run_bot
sleep 1
echo "-- 1,000 req/s for ${secs}s"
load -rate 1000 -duration "${secs}s"
for w in $(seq 1 "$windows"); do
  echo "-- window $w: max rate, 64 connections, ${secs}s"
  load -concurrency 64 -duration "${secs}s"
  echo "queue file: $(size) MB"
done
stop_bot
echo "-- restarted on the same file ($(size) MB): max rate, 64 connections, ${secs}s"
run_bot
load -concurrency 64 -duration "${secs}s"
echo "queue file: $(size) MB"
