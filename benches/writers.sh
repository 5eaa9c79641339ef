#!/usr/bin/env bash
# Several writers (issue 8): commands/s through one `command-api` against two on one
# Kafka-protocol broker, alternating within one run. wrk schedules deliveries for one
# account (one durable record each, no idempotency key, so each process picks ids in
# partitions it owns, and reads the account from its owner when that is the other): 64
# connections to the one, 32 to each of the two. Between rounds the second process stops
# gracefully and the first takes its partitions back.
#   benches/writers.sh [seconds] [rounds]
# Uses KAFKA_BROKERS when set, else starts tansu (memory storage) on loopback; every
# producer sends one record per batch and the owners group uses the eager assignor, as
# this broker needs (README "Scale out").
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-8}
rounds=${2:-3}
for tool in wrk curl python3; do
  command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
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
export DRONE_DELIVERY_OPERATOR_KEY="bench-writers-operator-key-$(date +%s)"
prefix="writers-$(date +%s)-"
log=(--log "kafka://$KAFKA_BROKERS" --kafka-topic-prefix "$prefix"
  --kafka-option batch.num.messages=1 --kafka-option partition.assignment.strategy=range
  --kafka-option session.timeout.ms=6000)
wait_ready() { for _ in $(seq 1200); do curl -sf "$1/readyz" >/dev/null && return; sleep 0.1; done; echo "$1 never ready" >&2; exit 1; }
owned() { curl -s -H "Authorization: Bearer $DRONE_DELIVERY_OPERATOR_KEY" "$1/metrics" | grep -c '^command_partition_owned{.*} 1$' || true; }
until_owned() { # url count [url count]
  for _ in $(seq 600); do
    if [ "$(owned "$1")" = "$2" ] && { [ $# -lt 4 ] || [ "$(owned "$3")" = "$4" ]; }; then return; fi
    sleep 0.1
  done
  echo "the partitions never settled" >&2; exit 1
}
start() { # port name
  RUST_LOG=warn target/release/drone-delivery command-api "${log[@]}" --listen 127.0.0.1:$1 \
    >"$data/$2.log" 2>&1 &
  echo $!
}
load() { # url connections
  wrk -t1 -c"$2" -d"${seconds}"s -H "Authorization: Bearer $DRONE_DELIVERY_OPERATOR_KEY" \
    -s benches/wrk/schedule.lua "$1/api/v1/deliveries" -- "$account" | awk '/Requests\/sec/ {print $2} /Non-2xx/ {print "non-2xx " $NF > "/dev/stderr"}'
}
port_a=$(free_port)
port_b=$(free_port)
a=http://127.0.0.1:$port_a
b=http://127.0.0.1:$port_b
pids+=($(start "$port_a" a))
wait_ready "$a"
until_owned "$a" 8
account=$(curl -sf -X POST -H "Authorization: Bearer $DRONE_DELIVERY_OPERATOR_KEY" -H "Content-Type: application/json" \
  -d '{"name": "Contoso", "email": "ops@contoso.example"}' "$a/api/v1/accounts" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["accountId"])')
one_round() {
  one=$(load "$a" 64)
}
two_round() {
  pid_b=$(start "$port_b" b)
  pids+=("$pid_b")
  wait_ready "$b"
  for _ in $(seq 600); do
    oa=$(owned "$a"); ob=$(owned "$b")
    [ "$oa" -gt 0 ] && [ "$ob" -gt 0 ] && [ $((oa + ob)) = 8 ] && break
    sleep 0.1
  done
  load "$a" 32 >"$data/two-a" &
  wa=$!
  two_b=$(load "$b" 32)
  wait $wa
  two_a=$(cat "$data/two-a")
  two=$(python3 -c "print(round($two_a + $two_b))")
  kill -TERM "$pid_b"; wait "$pid_b" 2>/dev/null || true
  until_owned "$a" 8
}
# The broker slows as its memory storage fills, so the order alternates by round and the
# broker's own ceiling for the same produce shape is measured beside them.
for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then one_round; two_round; else two_round; one_round; fi
  ceiling=$(python3 benches/kafka/ceiling.py "$KAFKA_BROKERS" "${prefix}ceiling-$round" 8 $((seconds * 2500)) |
    grep -oE '[0-9]+(\.[0-9]+)? records/s' | head -1)
  echo "round $round: one command-api ${one}/s; two ${two}/s (${two_a} + ${two_b}; partitions $oa + $ob); ratio $(python3 -c "print(round($two / $one, 2))"); the broker's ceiling ${ceiling}"
done
