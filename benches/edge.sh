#!/usr/bin/env bash
# The HTTP edge under crowds (issue 10, item 5), one run on this machine with a release
# build: the server's peak RSS and what clients saw
#   1. with 3,000 connections scheduling deliveries at once (load shedding on), and
#   2. with 20,000 idle sockets held open (the connection cap refuses those beyond it),
#      then whether a command still gets through.
#   benches/edge.sh [seconds]          (default 20)
# Prints a markdown table for BENCHMARKS.md; the runs' reports go to target/bench/edge-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
cargo build --release --quiet -p drone-delivery -p loadgen
out=target/bench/edge-$(date -u +%Y%m%dT%H%M%S)
mkdir -p "$out"
bin=target/release
key="edge-bench-operator-key-$$"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Starts a server on a fresh data directory; sets $server and $url.
start() {
  local port
  port=$(free_port)
  rm -rf "$out/data"
  DRONE_DELIVERY_OPERATOR_KEY=$key RUST_LOG=warn $bin/drone-delivery serve --data-dir "$out/data" \
    --listen "127.0.0.1:$port" "$@" >"$out/server.log" 2>&1 &
  server=$!
  url="http://127.0.0.1:$port"
  for _ in $(seq 300); do
    python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$url/readyz" 2>/dev/null && return
    sleep 0.1
  done
  echo "the server did not become ready" >&2
  exit 1
}

# Samples the server's RSS (KiB) every 0.2 s into $1 until the server or the sampler is stopped.
sample_rss() {
  while kill -0 "$server" 2>/dev/null; do
    ps -o rss= -p "$server" >>"$1" 2>/dev/null || true
    sleep 0.2
  done
}
peak_mib() { sort -n "$1" | tail -1 | awk '{printf "%.0f", $1/1024}'; }
metric() { # name: its value on /metrics
  python3 - "$url" "$key" "$1" <<'PY'
import sys, urllib.request
url, key, name = sys.argv[1:]
req = urllib.request.Request(url + "/metrics", headers={"Authorization": "Bearer " + key})
total = 0.0
for line in urllib.request.urlopen(req, timeout=5).read().decode().splitlines():
    if line.startswith(name + " ") or line.startswith(name + "{"):
        total += float(line.rsplit(" ", 1)[1])
print(int(total))
PY
}

echo "| run | server peak RSS | requests | 2xx | shed (503) | other | client timeouts | p99 |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"

# 1. 3,000 connections, closed loop, every one scheduling.
start
: >"$out/rss-3000.txt"
sample_rss "$out/rss-3000.txt" &
sampler=$!
$bin/loadgen --url "$url" --key "$key" --scenario schedule --connections 3000 --accounts 64 \
  --duration "$seconds" --visible-every-ms 0 --json "$out/c3000.json" >"$out/c3000.txt" 2>&1 || true
python3 - "$out/c3000.json" "$(peak_mib "$out/rss-3000.txt")" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
by = r["total"]["outcomes"]
total = r["total"]["requests"]
ok = sum(v for k, v in by.items() if k.startswith("2"))
shed = by.get("503", 0)
timeouts = by.get("timeout", 0)
other = total - ok - shed - timeouts
p99 = r["total"]["latency"]["p99_ms"]
print(f"| 3,000 connections scheduling, {r['duration_secs']:.0f} s | {sys.argv[2]} MiB | {total} | {ok} | {shed} | {other} | {timeouts} | {p99:.0f} ms |")
PY
kill $server; wait $server 2>/dev/null || true; kill $sampler 2>/dev/null || true

# 2. 20,000 silent sockets (two client processes: the file-descriptor limit is per process).
start
: >"$out/rss-idle.txt"
sample_rss "$out/rss-idle.txt" &
sampler=$!
port=${url##*:}
hold() { # sockets: opens them, reports how many the server closed at once, holds the rest
  python3 - "$port" "$1" <<'PY' &
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(count):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
        held.append(s)
    except OSError:
        break
time.sleep(3)
# Those beyond the cap are closed by the server at once: a read sees the end.
closed = 0
for s in held:
    s.setblocking(False)
    try:
        if s.recv(1) == b"":
            closed += 1
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
print(f"{len(held)} {closed}", flush=True)
time.sleep(20)
PY
}
hold 10000 >"$out/idle-a.txt"
holder_a=$!
hold 10000 >"$out/idle-b.txt"
holder_b=$!
sleep 6
# While they are held: does a command still get through?
status=$(python3 - "$url" "$key" <<'PY'
import json, sys, time, urllib.request
url, key = sys.argv[1:]
body = json.dumps({"name": "Contoso", "email": "ops@contoso.example"}).encode()
req = urllib.request.Request(url + "/api/v1/accounts", data=body, method="POST",
    headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
started = time.time()
try:
    code = urllib.request.urlopen(req, timeout=10).status
except Exception as e:
    code = getattr(e, "code", type(e).__name__)
print(f"{code} in {1000 * (time.time() - started):.0f} ms")
PY
)
sleep 1
refused=$(metric http_connections_refused_total)
open_now=$(metric http_connections_open)
wait $holder_a $holder_b
read -r held_a closed_a <"$out/idle-a.txt"
read -r held_b closed_b <"$out/idle-b.txt"
kill $server 2>/dev/null; wait $server 2>/dev/null || true; kill $sampler 2>/dev/null || true
echo "| $((held_a + held_b)) silent sockets opened ($((closed_a + closed_b)) of them closed by the server to make room, $open_now open at the end, $refused refused); a command meanwhile: $status | $(peak_mib "$out/rss-idle.txt") MiB | | | | | | |"
