#!/usr/bin/env bash
# Load test of the ads back end example with wrk, on loopback.
#
#   scripts/loadtest.sh            # 15 s a run; DURATION=30 for longer ones
#
# Runs: cached GET /ads/{id} at 256 connections; the same with caching off
# (ADS_CACHE_ENABLED=false: every #[cache_result] calls through to SQLite); a mixed
# read/write path; 1,000 connections for 30 s; and a fault run: warm ads read for 30 s with a
# 2 s TTL while the database fails from the 10th to the 20th second (fail-safe serves them),
# then 20 s with every database call stalling 5 s (the soft timeout serves them).
# Prints requests/s, p50, p99 and errors for each. `RUNS=fault` runs only the fault run.
set -euo pipefail
cd "$(dirname "$0")/.."

ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true
DURATION=${DURATION:-15}
PORT=${PORT:-8000}
THREADS=${THREADS:-2}

if ! command -v wrk >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --example ads_backend >/dev/null 2>&1
binary=target/release/examples/ads_backend
scripts=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$scripts"' EXIT

cat >"$scripts/ads.lua" <<'LUA'
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/ads/" .. math.random(1, 5000))
end
LUA
cat >"$scripts/mixed.lua" <<'LUA'
math.randomseed(os.time())
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
cat >"$scripts/warm.lua" <<'LUA'
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/ads/" .. math.random(1, 500))
end
LUA
cat >"$scripts/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d requests, %d errors\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, errors))
end
LUA
cat "$scripts/report.lua" >>"$scripts/ads.lua"
cat "$scripts/report.lua" >>"$scripts/mixed.lua"
cat "$scripts/report.lua" >>"$scripts/warm.lua"

TOKEN=loadtest-fault-switch-token
start() { # cache_enabled [extra environment...]
  env ADS_ADDR="127.0.0.1:$PORT" ADS_CACHE_ENABLED="$1" ADS_ADMIN_TOKEN="$TOKEN" "${@:2}" "$binary" >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/performance/health" >/dev/null 2>&1 && return
    sleep 0.2
  done
  echo "the example did not start" >&2
  exit 1
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; }
run() { # name connections duration script
  local line
  line=$(wrk -t"$THREADS" -c"$2" -d"$3"s -s "$scripts/$4" "http://127.0.0.1:$PORT" | grep RESULT)
  echo "$1: ${line#RESULT }"
}

fault() {
  curl -fs -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"mode\": \"$1\"}" "http://127.0.0.1:$PORT/admin/db-fault" >/dev/null
}

if [ "${RUNS:-all}" != fault ]; then
  start true
  wrk -t"$THREADS" -c64 -d3s -s "$scripts/ads.lua" "http://127.0.0.1:$PORT" >/dev/null # warm-up
  run "cached GET /ads/{id}, 256 connections" 256 "$DURATION" ads.lua
  run "mixed reads and writes, 256 connections" 256 "$DURATION" mixed.lua
  run "cached GET /ads/{id}, 1000 connections" 1000 30 ads.lua
  stop

  start false
  run "uncached GET /ads/{id} (cache_enabled = false), 256 connections" 256 "$DURATION" ads.lua
  stop
fi

# The fault run: 500 warm ads with a 2 s TTL; the database fails for 10 s in the middle.
start true PERF_CACHE_TTL=2
wrk -t"$THREADS" -c64 -d3s -s "$scripts/warm.lua" "http://127.0.0.1:$PORT" >/dev/null # warm-up
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
