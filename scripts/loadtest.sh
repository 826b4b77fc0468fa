#!/usr/bin/env bash
# Load test of the ads back end example with wrk, on loopback.
#
#   scripts/loadtest.sh            # 15 s a run; DURATION=30 for longer ones
#   RUNS=ceiling scripts/loadtest.sh   # one group: ceiling, ads, analytics, postgres, fault
#                                      # or tokenize
#
# Groups (all of them by default):
# - ceiling: cached GET /ads/{id} against a bare axum handler answering the same JSON
#   (examples/bare_ads.rs), ROUNDS alternating rounds at 256 connections, the median ratio;
#   then 1,000 connections for 30 s (errors counted).
# - ads: a mixed read/write path, and uncached GET /ads/{id} (ADS_CACHE_ENABLED=false: every
#   #[cache_result] calls through to SQLite).
# - analytics: GET /analytics/{user}/{day} over all 10,000 user-days of the million seeded
#   impressions, cached (after one pass that loads each) against uncached, the ratio.
# - postgres: GET /ads/{id} and the analytics, cached against uncached, on a PostgreSQL
#   started in a temporary directory (skipped, saying so, without the binaries).
# - fault: warm ads read for 30 s with a 2 s TTL while the database fails from the 10th to the
#   20th second (fail-safe serves them), then 20 s with every database call stalling 5 s (the
#   soft timeout serves them).
# - tokenize: the tokenize service example, by scripts/loadtest-tokenize.sh.
# Prints requests/s, p50, p99 and errors for each run.
set -euo pipefail
cd "$(dirname "$0")/.."

ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true
DURATION=${DURATION:-15}
PORT=${PORT:-8000}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-all}

if ! command -v wrk >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --example ads_backend --example bare_ads >/dev/null 2>&1
binary=target/release/examples/ads_backend
scripts=$(mktemp -d)
server=
postgres= # its data directory, once started
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  # The postmaster's own pid (runuser's would not pass the signal on); QUIT: stop now.
  if [ -n "$postgres" ]; then
    kill -QUIT "$(head -1 "$postgres/data/postmaster.pid" 2>/dev/null)" 2>/dev/null
    sleep 1
    rm -rf "$postgres"
  fi
  rm -rf "$scripts"
}
trap cleanup EXIT

cat >"$scripts/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d requests, %d errors\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, errors))
end
LUA
script() { # name body: a request function, with the report appended
  { echo 'math.randomseed(os.time())'; cat; cat "$scripts/report.lua"; } >"$scripts/$1"
}
script ads.lua <<'LUA'
request = function()
  return wrk.format("GET", "/ads/" .. math.random(1, 5000))
end
LUA
script mixed.lua <<'LUA'
request = function()
  local roll = math.random(1, 100)
  if roll <= 80 then
    return wrk.format("GET", "/ads/" .. math.random(1, 5000))
  elseif roll <= 95 then
    return wrk.format("GET", "/analytics/" .. math.random(1, 1000) .. "/2026-11-28")
  else
    local body = '{"user_id": ' .. math.random(1, 1000) .. ', "day": "2026-11-28"}'
    return wrk.format("POST", "/ads/" .. math.random(1, 5000) .. "/impressions",
      { ["Content-Type"] = "application/json" }, body)
  end
end
LUA
script warm.lua <<'LUA'
request = function()
  return wrk.format("GET", "/ads/" .. math.random(1, 500))
end
LUA
# Every user-day at random; and once each in order, to load them all before a cached run.
script analytics.lua <<'LUA'
request = function()
  return wrk.format("GET", "/analytics/" .. math.random(1, 1000) .. "/2026-11-" .. math.random(19, 28))
end
LUA
script analytics_once.lua <<'LUA'
local sent, answered = 0, 0
request = function()
  sent = sent + 1
  local n = (sent - 1) % 10000
  return wrk.format("GET", "/analytics/" .. (n % 1000 + 1) .. "/2026-11-" .. (19 + math.floor(n / 1000)))
end
response = function()
  answered = answered + 1
  if answered >= 10000 then wrk.thread:stop() end
end
LUA

TOKEN=loadtest-fault-switch-token
wait_up() { # url
  for _ in $(seq 1 300); do
    curl -fs "$1" >/dev/null 2>&1 && return
    kill -0 "$server" 2>/dev/null || break
    sleep 0.2
  done
  echo "the server did not start" >&2
  exit 1
}
start() { # cache_enabled [extra environment...]
  env ADS_ADDR="127.0.0.1:$PORT" ADS_CACHE_ENABLED="$1" ADS_ADMIN_TOKEN="$TOKEN" "${@:2}" "$binary" >/dev/null 2>&1 &
  server=$!
  wait_up "http://127.0.0.1:$PORT/performance/health"
}
start_bare() {
  ADS_ADDR="127.0.0.1:$PORT" target/release/examples/bare_ads >/dev/null 2>&1 &
  server=$!
  wait_up "http://127.0.0.1:$PORT/ads/1"
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; server=; }
run() { # name connections duration script; prints the result and keeps it in $result
  result=$(wrk -t"$THREADS" -c"$2" -d"$3"s -s "$scripts/$4" "http://127.0.0.1:$PORT" | grep RESULT)
  result=${result#RESULT }
  echo "$1: $result"
}
warm() { # requests for 3 s, unmeasured
  wrk -t"$THREADS" -c64 -d3s -s "$scripts/$1" "http://127.0.0.1:$PORT" >/dev/null
}
load_every_analytics() { # the 10,000 user-days once each (one wrk thread: one counter)
  wrk -t1 -c8 -d300s -s "$scripts/analytics_once.lua" "http://127.0.0.1:$PORT" >/dev/null &
  local loader=$!
  # wrk stops its thread after the 10,000th answer but waits out -d: stop it sooner.
  until curl -fs "http://127.0.0.1:$PORT/performance/cache/stats" | grep -Eq '"loader_runs":[0-9]{5}'; do
    kill -0 "$loader" 2>/dev/null || break
    sleep 0.5
  done
  kill "$loader" 2>/dev/null
  wait "$loader" 2>/dev/null || true
}
fault() {
  curl -fs -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"mode\": \"$1\"}" "http://127.0.0.1:$PORT/admin/db-fault" >/dev/null
}
rps() { echo "${1%% req/s*}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
median() { tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
wanted() { [ "$RUNS" = all ] || [ "$RUNS" = "$1" ]; }

if wanted ceiling; then
  echo "== cached GET /ads/{id} against a bare axum handler, $ROUNDS alternating rounds"
  ratios=
  for round in $(seq 1 "$ROUNDS"); do
    start_bare
    warm ads.lua
    run "round $round, bare handler, 256 connections" 256 "$DURATION" ads.lua
    bare=$(rps "$result")
    stop
    start true
    warm ads.lua
    run "round $round, cached example, 256 connections" 256 "$DURATION" ads.lua
    ratios="$ratios $(ratio "$(rps "$result")" "$bare")"
    [ "$round" = "$ROUNDS" ] || stop
  done
  echo "cached / bare, each round:$ratios; median $(echo $ratios | median)"
  run "cached GET /ads/{id}, 1000 connections, 30 s" 1000 30 ads.lua
  stop
fi

if wanted ads; then
  echo "== the example on SQLite"
  start true
  warm ads.lua
  run "mixed reads and writes, 256 connections" 256 "$DURATION" mixed.lua
  stop
  start false
  run "uncached GET /ads/{id} (cache_enabled = false), 256 connections" 256 "$DURATION" ads.lua
  stop
fi

analytics() { # extra environment for the example...
  start true "$@"
  load_every_analytics
  run "cached analytics, 256 connections" 256 "$DURATION" analytics.lua
  cached=$(rps "$result")
  stop
  start false "$@"
  run "uncached analytics (cache_enabled = false), 256 connections" 256 "$DURATION" analytics.lua
  echo "analytics cached / uncached: $(ratio "$cached" "$(rps "$result")")"
  stop
}

if wanted analytics; then
  echo "== analytics on SQLite (1,000,000 impressions)"
  analytics
fi

# A PostgreSQL in a temporary directory: run as the postgres user when this is root.
start_postgres() {
  local bin
  bin=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1)")
  [ -x "$bin/initdb" ] || return 1
  local dir as=()
  dir=$(mktemp -d)
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bin/initdb" -U postgres -A trust -E UTF8 --locale=C --no-sync -D "$dir/data" >/dev/null
  "${as[@]}" "$bin/postgres" -D "$dir/data" -p "$PG_PORT" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories="$dir" >"$scripts/postgres.log" 2>&1 &
  postgres=$dir
  for _ in $(seq 1 100); do
    grep -q "ready to accept connections" "$scripts/postgres.log" && return 0
    sleep 0.2
  done
  echo "postgres did not start: $(cat "$scripts/postgres.log")" >&2
  exit 1
}
PG_PORT=${PG_PORT:-5499}

if wanted postgres; then
  if start_postgres; then
    url="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    echo "== the example on PostgreSQL (seeded by its first start)"
    start true DATABASE_URL="$url"
    warm ads.lua
    run "cached GET /ads/{id}, 256 connections" 256 "$DURATION" ads.lua
    cached=$(rps "$result")
    stop
    start false DATABASE_URL="$url"
    run "uncached GET /ads/{id} (cache_enabled = false), 256 connections" 256 "$DURATION" ads.lua
    echo "GET /ads/{id} cached / uncached: $(ratio "$cached" "$(rps "$result")")"
    stop
    analytics DATABASE_URL="$url"
  else
    echo "== postgres skipped: no initdb on PATH or under /usr/lib/postgresql"
  fi
fi

if wanted fault; then
  # 500 warm ads with a 2 s TTL; the database fails for 10 s in the middle.
  echo "== faults"
  start true PERF_CACHE_TTL=2
  warm warm.lua
  (sleep 10 && fault fail && sleep 10 && fault none) &
  switcher=$!
  run "warm GET /ads/{id} for 30 s, database failing for 10 s of it, 256 connections" 256 30 warm.lua
  wait "$switcher"
  stats=$(curl -fs "http://127.0.0.1:$PORT/performance/cache/stats")
  echo "  cache loads: $(echo "$stats" | grep -o '"loads":{[^}]*}')"
  # Stalling: the values re-armed during the failure expire after their 30 s throttle, in this run.
  fault slow
  run "warm GET /ads/{id} for 20 s, database stalling 5 s a call, 256 connections" 256 20 warm.lua
  stats=$(curl -fs "http://127.0.0.1:$PORT/performance/cache/stats")
  echo "  cache loads: $(echo "$stats" | grep -o '"loads":{[^}]*}')"
  fault none
  stop
fi

if wanted tokenize; then
  echo "== the tokenize service"
  DURATION="$DURATION" THREADS="$THREADS" scripts/loadtest-tokenize.sh
fi
