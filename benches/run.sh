#!/usr/bin/env bash
# One command for the HTTP benchmarks of BENCHMARKS.md, all in one run on this machine:
# the floor (one fdatasync per request), ours on the embedded default in every scenario,
# ours on Kafka when a broker is at KAFKA_BROKERS, and the cqrs-es + PostgreSQL peer,
# which it builds (installing PostgreSQL if missing), starts and stops (BENCH_PEER=0
# leaves it out). Variants alternate within each round, so the ratios compare numbers
# taken minutes apart, not days.
#   benches/run.sh [seconds per run] [rounds]        (defaults: 10 s, 3 rounds)
# Results: target/bench/<time>/*.json (one per run), summary.md, and an SVG per run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
cargo build --release --quiet -p drone-delivery -p loadgen -p floor
out=target/bench/$(date -u +%Y%m%dT%H%M%S)
mkdir -p "$out"
bin=target/release

run() { # name, loadgen arguments… (DURATION=secs overrides the run's length)
  local name=$1
  shift
  echo "== $name" >&2
  $bin/loadgen --duration "${DURATION:-$seconds}" --json "$out/$name.json" --svg "$out/$name.svg" "$@" | tee "$out/$name.txt" >&2
}

floor_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
floor_file=$(mktemp)
$bin/floor --listen 127.0.0.1:$floor_port --file "$floor_file" 2>/dev/null &
floor=$!
peer_url=""
stop() {
  kill $floor 2>/dev/null || true
  rm -f "$floor_file"
  if [ -n "$peer_url" ]; then benches/peers/run-peer.sh stop >&2 || true; fi
}
trap stop EXIT
sleep 0.5

# The peer: installs Debian's PostgreSQL if missing and builds it (quick once built).
if [ "${BENCH_PEER:-1}" != 0 ]; then
  benches/peers/run-peer.sh build >&2
  peer_url=$(benches/peers/run-peer.sh start)
fi

for round in $(seq "$rounds"); do
  echo "#### round $round of $rounds" >&2
  run "floor-1-r$round" --url http://127.0.0.1:$floor_port --scenario schedule --connections 1 --accounts 1 --visible-every-ms 0
  run "ours-1-r$round" --spawn --scenario schedule --connections 1 --accounts 1 --visible-every-ms 0
  run "ours-64-r$round" --spawn --scenario schedule --connections 64
  run "ours-64-hot-r$round" --spawn --scenario schedule --connections 64 --accounts 1
  run "ours-register-1-r$round" --spawn --scenario schedule --mix register=1 --connections 1 --visible-every-ms 0
  run "ours-register-64-r$round" --spawn --scenario schedule --mix register=1 --connections 64 --visible-every-ms 0
  run "ours-query-10k-r$round" --spawn --scenario open-loop --rate 10000 --mix status=1 --connections 64
  run "ours-visible-5k-r$round" --spawn --scenario open-loop --rate 5000 --connections 64
  run "ours-mixed-r$round" --spawn --scenario mixed --connections 64
  if [ -n "$peer_url" ]; then
    run "peer-register-1-r$round" --url "$peer_url" --scenario schedule --mix register=1 --connections 1 --visible-every-ms 0
    run "peer-register-64-r$round" --url "$peer_url" --scenario schedule --mix register=1 --connections 64 --visible-every-ms 0
    run "peer-1-r$round" --url "$peer_url" --scenario schedule --connections 1 --accounts 1 --visible-every-ms 0
    run "peer-64-r$round" --url "$peer_url" --scenario schedule --connections 64 --visible-every-ms 0
    run "peer-query-r$round" --url "$peer_url" --scenario query --connections 64 --deliveries 200
    run "ours-query-r$round" --spawn --scenario query --connections 64 --deliveries 200
  fi
  if [ -n "${KAFKA_BROKERS:-}" ]; then
    prefix="bench-$(date +%s)-$round."
    run "kafka-64-r$round" --spawn --scenario schedule --connections 64 \
      --server-arg=--log --server-arg="kafka://$KAFKA_BROKERS" \
      --server-arg=--kafka-topic-prefix --server-arg="$prefix" \
      --server-arg=--kafka-option --server-arg=batch.num.messages=1
  fi
done
# The spike once, at the end: 50K/s for 10 s on 256 connections.
DURATION=10 run "ours-spike" --spawn --scenario spike --rate 50000 --connections 256 --visible-every-ms 0
python3 benches/summarize.py "$out" | tee "$out/summary.md"
echo "results in $out" >&2
