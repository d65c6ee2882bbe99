#!/usr/bin/env bash
# Intake load test (SPEC §11): a real `bot serve` on real Redis, signed 24 KB
# deliveries over loopback from bench/loadgen.
#   1. fixed rate 1,000 req/s → p99 (target ≤ 3 ms)
#   2. as fast as 64 connections go → req/s (target ≥ 10,000)
# and the bot's RSS idle and after the load (targets 60 MB / 200 MB).
# Usage: bash bench/intake.sh [seconds per phase, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
out=bench/out; mkdir -p "$out"
go build -o "$out/bot" ./cmd/bot
go build -o "$out/loadgen" ./bench/loadgen

# A 24 KB pull_request.opened delivery shaped like a real one (bench/payload.py).
python3 bench/payload.py pull_request "$out/payload-24k.json"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port); bport=$(free_port)
rdir=$(mktemp -d)
# `bot serve` leaves its keeper (the process that owns the local driver's
# proxies and instances) running on purpose; a benchmark stops the ones its
# bots started (by their --data-dir, so one still starting is found too).
stop_keepers() { pkill -f -- "keeper --data-dir $rdir/" 2>/dev/null || true; }
cleanup() { kill "$bot" "$redis" 2>/dev/null || true; wait 2>/dev/null || true; stop_keepers; rm -rf "$rdir"; }
trap cleanup EXIT
# appendfsync everysec: Redis' recommended production setting.
redis-server --port "$rport" --bind 127.0.0.1 --dir "$rdir" --appendonly yes --appendfsync everysec --save "" >/dev/null &
redis=$!
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done

openssl genrsa -out "$rdir/key.pem" 2048 2>/dev/null

rss() { awk '/VmRSS/{printf "%.1f MB", $2/1024}' /proc/"$1"/status; }
run_bot() {
  # GITHUB_API_URL points nowhere: the delivery-recovery sweep fails
  # quietly at start and the intake is all that is measured.
  PORT=$bport REDIS_URL=redis://127.0.0.1:$rport/0 APP_ID=1 WEBHOOK_SECRET=bench LOG_LEVEL=warn \
  PRIVATE_KEY_PATH="$rdir/key.pem" GITHUB_API_URL=http://127.0.0.1:1 DATA_DIR="$rdir/data" \
    "$out/bot" serve "$@" >"$out/bot.log" 2>&1 &
  bot=$!
  until curl -sf "http://127.0.0.1:$bport/healthz" >/dev/null; do sleep 0.05; done
}

for role in all web; do
  run_bot --role "$role"
  sleep 1
  echo "== role $role; RSS idle: $(rss $bot)"
  echo "-- 1,000 req/s for ${secs}s"
  "$out/loadgen" -url "http://127.0.0.1:$bport/webhooks" -secret bench -payload "$out/payload-24k.json" -rate 1000 -duration "${secs}s"
  echo "-- max rate, 64 connections, ${secs}s"
  "$out/loadgen" -url "http://127.0.0.1:$bport/webhooks" -secret bench -payload "$out/payload-24k.json" -concurrency 64 -duration "${secs}s"
  echo "RSS after load: $(rss $bot)"
  kill "$bot"; wait "$bot" 2>/dev/null || true
  redis-cli -p "$rport" flushall >/dev/null
done
