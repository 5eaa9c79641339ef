#!/usr/bin/env bash
# Telemetry through the batch endpoint (batches of 100) against a release build of
# `serve`, with wrk, while sampling the drones projection's lag (the tracking read model
# the status ETAs are computed from). Prints reports/s, latency, the largest lag seen
# and how long the read model took to catch up after the load.
#   benches/telemetry-load.sh [seconds] [connections] [drones]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-16}
drones=${3:-1000}
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet
data=$(mktemp -d)
port=18091
target/release/drone-delivery serve --listen 127.0.0.1:$port --data-dir "$data" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
for n in $(seq 0 $((drones - 1))); do
  printf '{"model": "X8", "payloadKg": 5, "rangeKm": 60, "speedMps": 15, "home": {"latitude": 47.6, "longitude": -122.3, "altitude": 0}}' |
    curl -sf -X PUT http://127.0.0.1:$port/api/v1/drones/load-$n -H 'content-type: application/json' -d @- >/dev/null
done
lag() {
  curl -sf http://127.0.0.1:$port/metrics | awk '/^projector_lag_events\{projection="drones"\}/ {print $2}'
}
max_lag=0
( while sleep 0.25; do lag; done ) > "$data/lags" &
sampler=$!
out=$(wrk -t2 -c"$connections" -d"${seconds}s" -s benches/wrk/telemetry-batch.lua http://127.0.0.1:$port -- "$drones")
kill $sampler
max_lag=$(sort -n "$data/lags" | tail -1)
started=$(date +%s.%N)
while [ "$(lag)" != "0" ]; do sleep 0.05; done
caught_up=$(echo "$(date +%s.%N) - $started" | bc)
requests=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
echo "$out" | grep -E "Latency|Requests/sec|Non-2xx|Socket errors" || true
echo "reports/s: $(echo "$requests * 100" | bc)"
echo "drones read model: largest lag $max_lag log records (a record holds the reports of one batch for one partition), caught up ${caught_up}s after the load"
