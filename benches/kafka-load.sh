#!/usr/bin/env bash
# Commands through Kafka (issue 7): a release `command-api` on a Kafka-protocol broker,
# the read side (`projector` + `query-api`) as a second process, wrk with 64 connections
# registering accounts, and the broker's own ceiling for the same produce shape measured
# in the same run (benches/kafka/ceiling.py), the two alternating; then the
# command-to-visible lag, idle and under the 64-connection load.
#   benches/kafka-load.sh [seconds] [rounds]
# Uses KAFKA_BROKERS when set, else starts tansu (memory storage) on loopback. Every
# producer sends one record per batch (batch.num.messages=1), which the local broker
# needs (see the README) and which is the ceiling's shape too.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
for tool in wrk curl python3; do
  command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
python3 -c 'import confluent_kafka' || { echo "needs pip install confluent-kafka" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
data=$(mktemp -d)
trap 'kill ${pids[@]} 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
if [ -z "${KAFKA_BROKERS:-}" ]; then
  port=$(free_port)
  tansu broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$data/tansu.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  KAFKA_BROKERS="127.0.0.1:$port"
fi
cargo build --release --quiet
prefix="bench-$(date +%s)-"
log=(--log "kafka://$KAFKA_BROKERS" --kafka-topic-prefix "$prefix" --kafka-option batch.num.messages=1)
command_port=$(free_port)
query_port=$(free_port)
RUST_LOG=warn target/release/drone-delivery command-api "${log[@]}" --listen 127.0.0.1:$command_port \
  >"$data/command-api.log" 2>&1 &
pids+=($!)
wait_ready() { for _ in $(seq 300); do curl -sf "$1/readyz" >/dev/null && return; sleep 0.1; done; echo "$1 never ready" >&2; exit 1; }
wait_ready http://127.0.0.1:$command_port
RUST_LOG=warn target/release/drone-delivery serve --roles projector,query-api "${log[@]}" \
  --data-dir "$data/read" --listen 127.0.0.1:$query_port >"$data/read-side.log" 2>&1 &
pids+=($!)
wait_ready http://127.0.0.1:$query_port
command=http://127.0.0.1:$command_port
query=http://127.0.0.1:$query_port
partitions=8 # the command topics' default (--partitions)
for round in $(seq "$rounds"); do
  echo "== round $round: the broker's ceiling (one record per batch, $partitions partitions)"
  python3 benches/kafka/ceiling.py "$KAFKA_BROKERS" "${prefix}ceiling-$round" "$partitions" $((seconds * 2500))
  echo "== round $round: register-account through command-api, 64 connections"
  wrk -t2 -c64 -d${seconds}s -s benches/wrk/register-account.lua $command/api/v1/accounts \
    | grep -E "Latency|Requests/sec|Non-2xx"
done
echo "== command-to-visible, idle"
python3 benches/kafka/visible.py $command $query 300 idle
echo "== command-to-visible, under 64 connections of register-account"
wrk -t2 -c64 -d$((seconds * 3))s -s benches/wrk/register-account.lua $command/api/v1/accounts >/dev/null &
load=$!
sleep 1
python3 benches/kafka/visible.py $command $query 300 loaded
kill $load 2>/dev/null || true
wait $load 2>/dev/null || true
