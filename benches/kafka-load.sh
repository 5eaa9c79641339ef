#!/usr/bin/env bash
# Commands through Kafka (issue 7): a release `command-api` on a Kafka-protocol broker
# and wrk with 64 connections registering accounts, alternating with the broker's own
# ceiling for the same produce shape (benches/kafka/ceiling.py); then the read side
# (`projector` + `query-api`) as a second process and the command-to-visible lag, idle
# and under the 64-connection load.
#   benches/kafka-load.sh [seconds] [rounds]
#   PARTITIONS=32 benches/kafka-load.sh …   # partitions of every command topic (8)
# Uses KAFKA_BROKERS when set, else starts tansu (memory storage) on loopback. Every
# producer sends one record per batch (batch.num.messages=1), which the local broker
# needs (see the README) and which is the ceiling's shape too. tansu also holds every
# fetch for the consumer's whole fetch.wait.max.ms (500 ms) even when records arrive
# (Kafka answers at once), so the read side here waits at most 10 ms per fetch.
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
partitions=${PARTITIONS:-8}
log=(--log "kafka://$KAFKA_BROKERS" --kafka-topic-prefix "$prefix" --partitions "$partitions"
  --kafka-option batch.num.messages=1)
command_port=$(free_port)
query_port=$(free_port)
RUST_LOG=warn target/release/drone-delivery command-api "${log[@]}" --listen 127.0.0.1:$command_port \
  >"$data/command-api.log" 2>&1 &
pids+=($!)
wait_ready() { for _ in $(seq 1200); do curl -sf "$1/readyz" >/dev/null && return; sleep 0.1; done; echo "$1 never ready" >&2; exit 1; }
wait_ready http://127.0.0.1:$command_port
command=http://127.0.0.1:$command_port
query=http://127.0.0.1:$query_port
for round in $(seq "$rounds"); do
  echo "== round $round: the broker's ceiling (one record per batch, $partitions partitions)"
  python3 benches/kafka/ceiling.py "$KAFKA_BROKERS" "${prefix}ceiling-$round" "$partitions" $((seconds * 2500))
  python3 benches/kafka/ceiling.py "$KAFKA_BROKERS" "${prefix}serial-$round" "$partitions" $((seconds * 2500)) --one-per-partition
  echo "== round $round: register-account through command-api, 64 connections"
  wrk -t2 -c64 -d${seconds}s -s benches/wrk/register-account.lua $command/api/v1/accounts \
    | grep -E "Latency|Requests/sec|Non-2xx"
done
RUST_LOG=warn target/release/drone-delivery serve --roles projector,query-api "${log[@]}" --kafka-option fetch.wait.max.ms=10 \
  --data-dir "$data/read" --listen 127.0.0.1:$query_port >"$data/read-side.log" 2>&1 &
pids+=($!)
wait_ready http://127.0.0.1:$query_port
echo "== command-to-visible, idle"
python3 benches/kafka/visible.py $command $query 300 idle
echo "== command-to-visible, under 64 connections of register-account"
wrk -t2 -c64 -d$((seconds * 3))s -s benches/wrk/register-account.lua $command/api/v1/accounts >/dev/null &
load=$!
sleep 1
python3 benches/kafka/visible.py $command $query 300 loaded
kill $load 2>/dev/null || true
wait $load 2>/dev/null || true
