#!/usr/bin/env bash
# HTTP load against a release build of `serve` with wrk (Debian package `wrk`): one
# connection issuing commands one at a time, then 64 connections. Prints wrk's summary.
#   benches/http-load.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet
data=$(mktemp -d)
port=18090
target/release/drone-delivery serve --listen 127.0.0.1:$port --data-dir "$data" >/dev/null 2>&1 &
server=$!
trap 'kill $server; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
for n in $(seq 0 63); do
  curl -sf -X PUT http://127.0.0.1:$port/api/v1/drones/load-$n -H 'content-type: application/json' \
    -d '{"model": "X8", "payloadKg": 5, "rangeKm": 60, "speedMps": 15,
         "home": {"latitude": 47.6, "longitude": -122.3, "altitude": 0}}' >/dev/null
done
api=http://127.0.0.1:$port/api/v1
for connections in 1 64; do
  threads=$(( connections == 1 ? 1 : 2 ))
  echo "== register-account, $connections connection(s)"
  wrk -t$threads -c$connections -d${seconds}s -s benches/wrk/register-account.lua $api/accounts | grep -E "Latency|Requests/sec|Non-2xx"
  echo "== telemetry, $connections connection(s)"
  wrk -t$threads -c$connections -d${seconds}s -s benches/wrk/telemetry.lua http://127.0.0.1:$port | grep -E "Latency|Requests/sec|Non-2xx"
done
