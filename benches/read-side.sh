#!/usr/bin/env bash
# The read side on the embedded default (issue 9), alternating the variants each round:
#  - command-to-visible at 5K schedules/s offered (open loop, 64 connections): the
#    probe reads with the schedule's consistency token, so the server's wait is in it.
#    `notified`: `serve` as shipped (reads wake on the projectors' applies); `polled`:
#    the same with every projection named in `--only`, which turns the notification
#    off (the query side then polls, capped at 10 ms, as it does across processes).
#  - a fleet page of 500 drones with positions (8 connections, closed loop).
#   benches/read-side.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
cargo build --release --quiet --workspace --bins
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
loadgen=target/release/loadgen
polled=(--server-arg=--only --server-arg=accounts,deliveries,invoices,drones)
for round in $(seq "$rounds"); do
  echo "== round $round"
  for variant in notified polled; do
    extra=()
    [ "$variant" = polled ] && extra=("${polled[@]}")
    $loadgen --spawn --scenario open-loop --rate 5000 --duration "$seconds" "${extra[@]}" \
      --json "$out/$variant-$round.json" | grep -E "^(all|schedule) |command-to-visible" | sed "s/^/$variant: /"
  done
  $loadgen --spawn --scenario query --mix fleet=1 --drones 500 --connections 8 \
    --duration "$seconds" --json "$out/fleet-$round.json" | grep -E "^fleet " | sed "s/^/fleet-500: /"
done
