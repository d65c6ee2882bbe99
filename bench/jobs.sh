#!/usr/bin/env bash
# Job throughput (issue #17): do the workers keep up with the intake?
# A real `bot serve` on real Redis, signed 24 KB push deliveries that
# delete a branch (the push handler decodes them and acks without calling
# GitHub) from bench/loadgen over loopback.
#   1. --role all, 64 connections for N seconds: intake req/s, then jobs/s
#      from the first delivery until the last job is done (target: ≥ intake)
#   2. --role all again, open loop at PACE% (default 80) of the intake
#      rate of 1: the largest backlog seen and how long after the load the
#      last job ends (workers that keep up: a backlog of a few hundred, a
#      tail of milliseconds)
#   3. a backlog: --role web fills the queue for N seconds, then one
#      --role worker process drains it: jobs/s (target ≥ 5,000)
# PPROF=1 builds with -tags pprof and writes CPU profiles of the bot
# (bench/out/*.pprof) taken during each phase.
# Usage: bash bench/jobs.sh [seconds, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
out=bench/out; mkdir -p "$out"
tags=(); [ "${PPROF:-}" = 1 ] && tags=(-tags pprof)
go build "${tags[@]}" -o "$out/bot" ./cmd/bot
go build -o "$out/loadgen" ./bench/loadgen

python3 bench/payload.py push "$out/push-delete-24k.json"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port); bport=$(free_port); pport=$(free_port)
rdir=$(mktemp -d)
bot=; redis=
# `bot serve` leaves its keeper (the process that owns the local driver's
# proxies and instances) running on purpose; a benchmark stops the ones its
# bots started (by their --data-dir, so one still starting is found too).
stop_keepers() { pkill -f -- "keeper --data-dir $rdir/" 2>/dev/null || true; }
cleanup() { kill $bot $redis 2>/dev/null || true; wait 2>/dev/null || true; stop_keepers; rm -rf "$rdir"; }
trap cleanup EXIT
redis-server --port "$rport" --bind 127.0.0.1 --dir "$rdir" --appendonly yes --appendfsync everysec --save "" >/dev/null &
redis=$!
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
openssl genrsa -out "$rdir/key.pem" 2048 2>/dev/null

run_bot() { # port role
  PORT=$1 REDIS_URL=redis://127.0.0.1:$rport/0 APP_ID=1 WEBHOOK_SECRET=bench LOG_LEVEL=warn \
  PRIVATE_KEY_PATH="$rdir/key.pem" GITHUB_API_URL=http://127.0.0.1:1 DATA_DIR="$rdir/data-$2" \
  PPROF_ADDR=127.0.0.1:$pport "$out/bot" serve --role "$2" >>"$out/bot.log" 2>&1 &
  bot="$bot $!"
  until curl -sf "http://127.0.0.1:$1/healthz" >/dev/null; do sleep 0.05; done
}
jobs_done() { # port: push jobs acked so far
  curl -s "http://127.0.0.1:$1/metrics" | awk '/^shipbot_jobs_total\{event="push",result="ok"\}/{print $2+0; f=1} END{if(!f)print 0}'
}
profile() { # name seconds: a CPU profile of the bot in the background
  [ "${PPROF:-}" = 1 ] && curl -s -o "$out/$1.pprof" "http://127.0.0.1:$pport/debug/pprof/profile?seconds=$2" &
  true
}
now() { date +%s.%N; }
load() { # port: prints loadgen's lines, leaves the request count in $sent
  "$out/loadgen" -url "http://127.0.0.1:$1/webhooks" -secret bench -event push \
    -payload "$out/push-delete-24k.json" -concurrency 64 -duration "${secs}s" | tee "$rdir/load"
  sent=$(awk '/^requests/{print $2}' "$rdir/load")
}
wait_jobs() { # port count: waits (≤ 120 s) until count push jobs are done
  for _ in $(seq 1200); do [ "$(jobs_done "$1")" -ge "$2" ] && return; sleep 0.1; done
  echo "only $(jobs_done "$1") of $2 jobs done after 120 s"; exit 1
}

echo "== role all: intake and workers in one process"
run_bot "$bport" all
profile all $((secs - 1))
t0=$(now); load "$bport"
echo "jobs done by the end of the load: $(jobs_done "$bport") of $sent"
wait_jobs "$bport" "$sent"; t1=$(now)
echo "jobs $sent done in $(echo "$t1 - $t0" | bc -l | xargs printf %.1f)s = $(echo "$sent / ($t1 - $t0)" | bc -l | xargs printf %.0f) jobs/s"
kill $bot; wait $bot 2>/dev/null || true; bot=
redis-cli -p "$rport" flushall >/dev/null
pace=${PACE:-80}
rate=$((sent * pace / 100 / secs))

echo "== role all, open loop at $pace% of that intake rate ($rate req/s): do the jobs keep pace?"
run_bot "$bport" all
deliveries() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^shipbot_webhook_deliveries_total\{.*outcome="queued"/{n+=$2} END{print n+0}'; }
( peak=0; while [ ! -f "$rdir/rated" ]; do
    d=$(deliveries "$bport"); j=$(jobs_done "$bport"); [ $((d - j)) -gt "$peak" ] && peak=$((d - j))
    echo "$peak" >"$rdir/peak"; sleep 0.2; done ) &
"$out/loadgen" -url "http://127.0.0.1:$bport/webhooks" -secret bench -event push \
  -payload "$out/push-delete-24k.json" -rate "$rate" -concurrency 256 -duration "${secs}s" | tee "$rdir/load"
touch "$rdir/rated"; wait $!
sent=$(awk '/^requests/{print $2}' "$rdir/load")
echo "jobs done by the end of the load: $(jobs_done "$bport") of $sent; largest backlog seen: $(cat "$rdir/peak") deliveries (sampled every 0.2 s)"
t0=$(now); wait_jobs "$bport" "$sent"; t1=$(now)
echo "the last jobs done $(echo "$t1 - $t0" | bc -l | xargs printf %.2f)s after the load"
kill $bot; wait $bot 2>/dev/null || true; bot=
redis-cli -p "$rport" flushall >/dev/null

echo "== backlog: role web fills the queue, then one role worker drains it"
run_bot "$bport" web
load "$bport"
kill $bot; wait $bot 2>/dev/null || true; bot=
wport=$(free_port)
t0=$(now); run_bot "$wport" worker
profile worker 3
wait_jobs "$wport" "$sent"; t1=$(now)
echo "backlog of $sent drained in $(echo "$t1 - $t0" | bc -l | xargs printf %.1f)s (start-up included) = $(echo "$sent / ($t1 - $t0)" | bc -l | xargs printf %.0f) jobs/s"
