#!/usr/bin/env bash
# Fuzzes the running API with schemathesis against its own OpenAPI document, every
# check on, for a bounded time: any 5xx or conformance failure fails the run. The live
# streams are left out (an open stream never ends; tests/api/streams.rs covers them).
#   [SCHEMATHESIS_SEED=n] tests/fuzz/schemathesis.sh [server binary] [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/debug/drone-delivery}
seconds=${2:-180}
key="schemathesis-operator-key-$$"
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# No rate limit: the fuzzer is the operator, but keep it off in case it mints tenants.
DRONE_DELIVERY_OPERATOR_KEY=$key RUST_LOG=warn "$bin" serve --data-dir "$dir/data" \
  --listen "127.0.0.1:$port" --rate-limit-per-key 0 >"$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 200); do
  python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "http://127.0.0.1:$port/readyz" 2>/dev/null && break
  sleep 0.1
done
status=0
schemathesis --config-file tests/fuzz/schemathesis.toml run \
  "http://127.0.0.1:$port/api/v1/openapi.json" \
  -H "Authorization: Bearer $key" \
  --checks all --max-time "$seconds" --max-examples 40 --workers 2 --seed "${SCHEMATHESIS_SEED:-7}" \
  --request-timeout 10 \
  --exclude-path-regex '/stream$' || status=$?
if grep -qE "panicked|ERROR" "$dir/server.log"; then
  echo "schemathesis.sh: the server logged errors:" >&2
  grep -E "panicked|ERROR" "$dir/server.log" | head -20 >&2
  status=1
fi
exit $status
