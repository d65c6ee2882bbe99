#!/usr/bin/env bash
# Audit export (issue #14): a real `bot serve --role web` on real Redis
# holding N audit entries; one GET /audit.jsonl of all of them, signed in
# with DASHBOARD_TOKEN. Prints the time to the last byte, the bytes and
# lines, and the bot's RSS before the request and its peak (VmHWM) after.
# Targets: 100,000 entries in ≤ 2 s and ≤ 50 MB RSS.
# Usage: bash bench/audit.sh [entries, default 100000]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
out=bench/out; mkdir -p "$out"
go build -o "$out/bot" ./cmd/bot
go build -o "$out/auditfill" ./bench/auditfill

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port); bport=$(free_port)
rdir=$(mktemp -d)
# `bot serve` leaves its keeper (the process that owns the local driver's
# proxies and instances) running on purpose; a benchmark stops the ones its
# bots started (by their --data-dir, so one still starting is found too).
stop_keepers() { pkill -f -- "keeper --data-dir $rdir/" 2>/dev/null || true; }
cleanup() { kill "${bot:-}" "$redis" 2>/dev/null || true; wait 2>/dev/null || true; stop_keepers; rm -rf "$rdir"; }
trap cleanup EXIT
redis-server --port "$rport" --bind 127.0.0.1 --dir "$rdir" --appendonly no --save "" >/dev/null &
redis=$!
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
"$out/auditfill" -redis "redis://127.0.0.1:$rport/0" -n "$n"

openssl genrsa -out "$rdir/key.pem" 2048 2>/dev/null
token=$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
PORT=$bport REDIS_URL=redis://127.0.0.1:$rport/0 APP_ID=1 WEBHOOK_SECRET=bench LOG_LEVEL=warn \
  PRIVATE_KEY="$(cat "$rdir/key.pem")" GITHUB_API_URL=http://127.0.0.1:1 DASHBOARD_TOKEN="$token" \
  "$out/bot" serve --role web >"$rdir/bot.log" 2>&1 &
bot=$!
until curl -sf "http://127.0.0.1:$bport/healthz" >/dev/null; do sleep 0.05; done
sleep 1
kb() { awk -v k="$2" '$1==k":"{print $2}' /proc/"$1"/status; }
before=$(kb "$bot" VmRSS)
curl -sf -H "Authorization: Bearer $token" -o "$rdir/audit.jsonl" \
  -w 'GET /audit.jsonl: %{time_total} s to the last byte, %{size_download} bytes\n' \
  "http://127.0.0.1:$bport/audit.jsonl"
echo "lines: $(wc -l <"$rdir/audit.jsonl")"
echo "bot RSS before: $((before / 1024)) MB; peak (VmHWM) after: $(($(kb "$bot" VmHWM) / 1024)) MB"
