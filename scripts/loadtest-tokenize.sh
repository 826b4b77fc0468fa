#!/usr/bin/env bash
# Load test of the tokenize service example with wrk, on loopback.
#
#   scripts/loadtest-tokenize.sh      # 10 s a run; DURATION=30 for longer ones
#
# POST /tokenize over 64 distinct texts of English words, each sent again and again, at
# 1 KiB and at 16 KiB: with the token cache on (after a warm-up every request is a hit), then
# off (TOKENIZE_CACHE_ENABLED=false: every request tokenizes; the encoders stay cached).
# Prints requests/s, p50, p99 and errors for each, and cached/uncached for each size.
set -euo pipefail
cd "$(dirname "$0")/.."

ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true
DURATION=${DURATION:-10}
PORT=${PORT:-8100}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}

if ! command -v wrk >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --example tokenize_service >/dev/null 2>&1
binary=target/release/examples/tokenize_service
scripts=$(mktemp -d)
server=
trap 'if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$scripts"' EXIT

# Every wrk thread makes the same 64 texts (one seed), so that texts repeat across threads.
cat >"$scripts/texts.lua" <<'LUA'
local words = { "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was",
  "with", "be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which",
  "but", "have", "an", "had", "they", "you", "were", "their", "one", "all", "we", "can",
  "her", "has", "there", "been", "if", "more", "when", "will", "would", "who", "so", "no",
  "cache", "tokenizer", "request", "latency", "throughput", "server", "memory", "encoder",
  "measure", "service", "repeated", "texts", "performance", "benchmark", "loopback",
  "compressed", "hash", "content", "model", "batch", "cleanup", "pressure", "rebuilt",
  "question", "answer", "because", "between", "through", "without", "another", "example",
  "language", "number", "people", "little", "different", "important", "government" }
local requests = {}
init = function(args)
  local size = tonumber(args[1])
  math.randomseed(42)
  for i = 1, 64 do
    local parts, length = { "Text " .. i .. ":" }, 0
    while length < size do
      local word = words[math.random(#words)]
      if math.random(12) == 1 then word = word .. "." end
      parts[#parts + 1] = word
      length = length + #word + 1
    end
    -- Exactly `size` bytes (ASCII), so that each run measures one text length.
    local text = string.sub(table.concat(parts, " "), 1, size)
    local body = '{"text": "' .. text .. '"}'
    requests[i] = wrk.format("POST", "/tokenize", { ["Content-Type"] = "application/json" }, body)
  end
end
request = function()
  return requests[math.random(#requests)]
end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d requests, %d errors\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, errors))
end
LUA

start() { # cache_enabled
  env TOKENIZE_ADDR="127.0.0.1:$PORT" TOKENIZE_CACHE_ENABLED="$1" RUST_LOG=warn "$binary" >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/performance/health" >/dev/null 2>&1 && return
    sleep 0.2
  done
  echo "the example did not start" >&2
  exit 1
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; server=; }
wrk_run() { # bytes duration
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2"s -s "$scripts/texts.lua" "http://127.0.0.1:$PORT" -- "$1"
}
declare -A rate
run() { # label bytes
  local line
  line=$(wrk_run "$2" "$DURATION" | grep RESULT)
  line=${line#RESULT }
  rate[$1-$2]=${line%% req/s*}
  echo "$1 POST /tokenize, $2-byte texts, $CONNECTIONS connections: $line"
}
loads() {
  local stats
  stats=$(curl -fs "http://127.0.0.1:$PORT/performance/cache/stats")
  echo "  token cache loads: $(echo "$stats" | grep -o '"loader_runs":[0-9]*'), $(curl -fs "http://127.0.0.1:$PORT/tokenize/stats")"
}

start true
for bytes in 1024 16384; do
  wrk_run "$bytes" 2 >/dev/null # warm-up: every text cached, every encoder built
  run cached "$bytes"
done
loads
stop

start false
for bytes in 1024 16384; do
  wrk_run "$bytes" 2 >/dev/null # warm-up: the encoder built
  run uncached "$bytes"
done
loads
stop

for bytes in 1024 16384; do
  echo "cached/uncached, $bytes-byte texts: $(awk -v c="${rate[cached-$bytes]}" -v u="${rate[uncached-$bytes]}" \
    'BEGIN { printf "%.1fx", c / u }')"
done
