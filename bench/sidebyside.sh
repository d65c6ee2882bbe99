#!/usr/bin/env bash
# Intake side by side (issue #17, SPEC §11): the same signed 24 KB push
# deliveries from the same load generator (bench/loadgen), one system at a
# time on this machine:
#   hmac          HTTP + HMAC, nothing stored (floor)
#   githubapp     a minimal go-githubapp server (non-durable peer)
#   hmac-redis    HTTP + HMAC + one Redis round trip per delivery (durable floor)
#   shipbot-redis `bot serve --role web` with REDIS_URL
#   shipbot-embedded `bot serve` without REDIS_URL (bbolt in DATA_DIR, fresh file)
# For each: p99 at 1,000 req/s, max req/s at 64 connections (PASSES passes),
# RSS after the load, CPU per delivery of the server and of Redis during
# those passes (from /proc); then the ratios to go-githubapp. With EMBEDDED_LONG=1,
# the embedded store also runs 6 × 10 s at full rate on one file (is it flat?)
# and reports its file size; EMBEDDED_LONG=N runs N windows.
# Usage: bash bench/sidebyside.sh [seconds per pass, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
passes=${PASSES:-3}
out=bench/out; mkdir -p "$out"
go build -o "$out/bot" ./cmd/bot
go build -o "$out/loadgen" ./bench/loadgen
(cd bench/peers && go build -o "../out/peers" .)

# A 24 KB push that deletes a branch: what the issue measured with (a push),
# and one whose job needs no GitHub call, so that the embedded store's
# workers drain it as they would in production instead of retrying against
# an unreachable GitHub and letting the backlog grow.
python3 bench/payload.py push "$out/payload-24k.json"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port); port=$(free_port)
work=$(mktemp -d)
pid=""
# `bot serve` leaves its keeper (the process that owns the local driver's
# proxies and instances) running on purpose; a benchmark stops the ones its
# bots started (by their --data-dir, so one still starting is found too).
stop_keepers() { pkill -f -- "keeper --data-dir $work/" 2>/dev/null || true; }
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$redis" ] && kill "$redis" 2>/dev/null || true; wait 2>/dev/null || true; stop_keepers; rm -rf "$work"; }
trap cleanup EXIT
# Every durable system gets the same Redis: appendfsync everysec, Redis'
# recommended production setting.
# REDIS_ARGS adds to it (e.g. "--rdbcompression no").
# shellcheck disable=SC2086 # REDIS_ARGS is a list of words
redis-server --port "$rport" --bind 127.0.0.1 --dir "$work" --appendonly yes --appendfsync everysec --save "" ${REDIS_ARGS:-} >/dev/null &
redis=$!
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
# Nothing consumes the jobs of `--role web` and of hmac-redis here. In
# production workers ack and delete them and the stream stays short, so by
# default the streams are trimmed to their last 5,000 entries twice a
# second, standing in for workers that keep up (their CPU is not counted).
# KEEP_BACKLOG=1 keeps every job instead: Redis then grows by about 1 GB a
# pass, and each rewrite of its append-only file copies all of it.
if [ "${KEEP_BACKLOG:-}" != 1 ]; then
  (while kill -0 "$redis" 2>/dev/null; do
    redis-cli -p "$rport" xtrim shipbot:queue:jobs maxlen '~' 5000 >/dev/null 2>&1
    redis-cli -p "$rport" xtrim jobs maxlen '~' 5000 >/dev/null 2>&1
    sleep 0.5
  done) &
fi
openssl genrsa -out "$work/key.pem" 2048 2>/dev/null

rss() { awk '/VmRSS/{printf "%.0f", $2/1024}' /proc/"$1"/status; }
load() { "$out/loadgen" -url "http://127.0.0.1:$port/webhooks" -secret bench -event push -payload "$out/payload-24k.json" "$@" -duration "${secs}s" || true; }

start() { # name, then the command
  local name=$1; shift
  "$@" >"$out/$name.log" 2>&1 &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "$name did not start:"; cat "$out/$name.log"; exit 1; }
    sleep 0.05
  done
  sleep 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; [ -z "$redis" ] || redis-cli -p "$rport" flushall >/dev/null; }

# The bot's environment (a command prefix, not a function: the process
# started in the background must be the bot itself, so that stop kills it).
bot_env=(env PORT="$port" APP_ID=1 WEBHOOK_SECRET=bench LOG_LEVEL=warn PRIVATE_KEY_PATH="$work/key.pem"
  GITHUB_API_URL=http://127.0.0.1:1)

declare -A p99 best rssmb
# CPU ticks (user + system, 1/100 s) a process and its finished children
# have used so far; 0 for none. The children count: Redis forks one for each
# rewrite of its append-only file, and that work is part of storing.
ticks() { if [ -n "$1" ] && [ -r /proc/"$1"/stat ]; then awk '{print $14+$15+$16+$17}' /proc/"$1"/stat; else echo 0; fi; }

declare -A cpu_server cpu_redis
measure() { # name
  local name=$1 rates=() r n total=0
  echo "== $name"
  local res; res=$(load -rate 1000); echo "$res" | sed 's/^/   1k\/s: /'
  p99[$name]=$(echo "$res" | sed -n 's/.* p99 \([^ ]*\) .*/\1/p')
  # CPU per delivery over the full-rate passes: the server's, and Redis'
  # for the systems that use it (the load generator's is not counted).
  local s0 r0; s0=$(ticks "$pid"); r0=$(ticks "${redis:-}")
  for i in $(seq "$passes"); do
    res=$(load -concurrency 64); echo "$res" | sed -n '1p' | sed "s/^/   max $i: /"
    r=$(echo "$res" | sed -n 's/.*= \([0-9]*\) req\/s.*/\1/p'); rates+=("$r")
    n=$(echo "$res" | sed -n 's/^requests \([0-9]*\) .*/\1/p'); total=$((total + ${n:-0}))
  done
  local s1 r1; s1=$(ticks "$pid"); r1=$(ticks "${redis:-}")
  cpu_server[$name]=$(( (s1 - s0) * 10000 / (total > 0 ? total : 1) ))
  cpu_redis[$name]=$(( (r1 - r0) * 10000 / (total > 0 ? total : 1) ))
  best[$name]=$(printf '%s\n' "${rates[@]}" | sort -n | tail -1)
  rssmb[$name]=$(rss "$pid")
  echo "   max req/s over $passes passes: $(printf '%s ' "${rates[@]}")  RSS ${rssmb[$name]} MB  CPU per delivery: server ${cpu_server[$name]} µs, redis ${cpu_redis[$name]} µs"
}

# SYSTEMS picks some of them (default: all, in this order).
systems=${SYSTEMS:-hmac githubapp hmac-redis shipbot-redis shipbot-embedded}
want() { [[ " $systems " == *" $1 "* ]]; }

want hmac && { start hmac "$out/peers" -mode hmac -addr "127.0.0.1:$port" -secret bench; measure hmac; stop; }
want githubapp && { start githubapp "$out/peers" -mode githubapp -addr "127.0.0.1:$port" -secret bench; measure githubapp; stop; }
want hmac-redis && { start hmac-redis "$out/peers" -mode hmac-redis -addr "127.0.0.1:$port" -secret bench -redis "redis://127.0.0.1:$rport/0"; measure hmac-redis; stop; }
want shipbot-redis && { start shipbot-redis "${bot_env[@]}" REDIS_URL="redis://127.0.0.1:$rport/0" DATA_DIR="$work/data-redis" "$out/bot" serve --role web; measure shipbot-redis; stop; }
# The embedded store needs no Redis, and its fsyncs must not queue behind
# Redis writing its append-only file of the runs above to the same disk (a
# p99 of 124 ms at 1k/s instead of 5 ms): stop Redis and flush first.
kill "$redis" 2>/dev/null; wait "$redis" 2>/dev/null || true; redis=""; sync
want shipbot-embedded && {
start shipbot-embedded "${bot_env[@]}" DATA_DIR="$work/data-embedded" "$out/bot" serve; measure shipbot-embedded
long=${EMBEDDED_LONG:-0}
[ "$long" = 1 ] && long=6
if [ "$long" -gt 0 ]; then
  echo "-- embedded, $long × 10 s at full rate on the same file"
  for i in $(seq "$long"); do
    "$out/loadgen" -url "http://127.0.0.1:$port/webhooks" -secret bench -event push -payload "$out/payload-24k.json" -concurrency 64 -duration 10s | sed -n '1p' | sed "s/^/   $i: /" || true
  done
  echo "   file: $(du -m "$work/data-embedded/shipbot.db" | cut -f1) MB, RSS $(rss "$pid") MB"
fi
stop
}

echo
echo "| system | max req/s (best of $passes) | × go-githubapp | p99 at 1k/s | RSS after | CPU µs per delivery: server + redis |"
echo "| --- | --- | --- | --- | --- | --- |"
for n in $systems; do
  ratio=$(python3 -c "print(f'{${best[$n]:-0}/max(${best[githubapp]:-1},1):.2f}')")
  echo "| $n | ${best[$n]} | $ratio | ${p99[$n]} | ${rssmb[$n]} MB | ${cpu_server[$n]} + ${cpu_redis[$n]} |"
done
