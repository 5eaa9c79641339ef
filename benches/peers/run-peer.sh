#!/usr/bin/env bash
# The cqrs-es 0.5 + postgres-es 0.5 peer (benches/peers/cqrs-es) over a throw-away, durable
# PostgreSQL cluster, for side-by-side benchmarks. Run from anywhere; paths are the repo's.
#   benches/peers/run-peer.sh build   # PostgreSQL server (apt) if missing, then the peer
#   benches/peers/run-peer.sh check   # exit 0 iff the peer binary and PostgreSQL are there
#   benches/peers/run-peer.sh start   # fresh cluster + peer; prints ONLY the peer's URL
#   benches/peers/run-peer.sh stop    # stops both, removes target/bench/peer
# Everything but start's URL goes to stderr. State (pgdata, logs, pid files, peer.env) is in
# target/bench/peer.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
manifest=$repo/benches/peers/cqrs-es/Cargo.toml
target_dir=$repo/target/peers
binary=$target_dir/release/cqrs-es-peer
state=$repo/target/bench/peer
pgdata=$state/pgdata
database=peer

log() { echo "run-peer: $*" >&2; }
die() { log "$*"; exit 1; }

# The directory of initdb/pg_ctl/postgres, or nothing.
pg_bin() {
  local initdb
  if initdb=$(command -v initdb 2>/dev/null) && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$initdb")"
    return
  fi
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
      echo "$dir"
      return
    fi
  done
}

install_postgres() {
  [[ -n $(pg_bin) ]] && return
  log "PostgreSQL server binaries not found; installing the Debian package"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq postgresql >&2; then
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
  fi
  [[ -n $(pg_bin) ]] || die "postgresql installed, but initdb/pg_ctl are still not found"
}

# initdb and postgres refuse to run as root: use an unprivileged account.
pg_user() {
  if [[ $(id -u) -ne 0 ]]; then
    id -un
    return
  fi
  if ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres >&2
  fi
  echo postgres
}

as_pg() {
  local user=$1
  shift
  if [[ $(id -u) -ne 0 ]]; then
    "$@"
  elif command -v runuser >/dev/null; then
    runuser -u "$user" -- "$@"
  else
    su -s /bin/sh "$user" -c "$(printf '%q ' "$@")"
  fi
}

port_in_use() {
  if command -v ss >/dev/null; then
    [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

free_port() {
  local port
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" || { echo "$port"; return; }
  done
  die "no free port found"
}

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

cmd_build() {
  install_postgres
  log "building the peer (cargo build --release, target dir target/peers)"
  local started=$SECONDS
  cargo build --release --manifest-path "$manifest" --target-dir "$target_dir" >&2
  log "built $binary in $((SECONDS - started)) s"
}

cmd_check() {
  [[ -x $binary ]] || die "no peer binary at $binary (run: $0 build)"
  [[ -n $(pg_bin) ]] || die "no PostgreSQL server binaries (run: $0 build)"
}

cmd_stop() {
  local pid
  if [[ -f $state/peer.pid ]]; then
    pid=$(cat "$state/peer.pid")
    if alive "$pid"; then
      log "stopping the peer (pid $pid)"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
      if alive "$pid"; then
        log "the peer did not stop in 10 s; killing it"
        kill -9 "$pid" 2>/dev/null || true
      fi
    fi
  fi
  if [[ -f $pgdata/postmaster.pid ]]; then
    local bin user
    bin=$(pg_bin)
    user=$(stat -c %U "$pgdata")
    log "stopping PostgreSQL"
    if ! as_pg "$user" "$bin/pg_ctl" stop -D "$pgdata" -m fast -w -t 60 >&2; then
      pid=$(head -1 "$pgdata/postmaster.pid" 2>/dev/null || true)
      if alive "$pid"; then
        log "pg_ctl stop failed; sending SIGQUIT to postmaster $pid"
        kill -QUIT "$pid" 2>/dev/null || true
        for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
      fi
    fi
  fi
  rm -rf "$state"
}

cmd_start() {
  cmd_check
  if [[ -f $state/peer.pid ]] && alive "$(cat "$state/peer.pid")"; then
    die "a peer is already running (pid $(cat "$state/peer.pid")); run: $0 stop"
  fi
  [[ -e $state ]] && cmd_stop
  local bin user pg_port port url pid
  bin=$(pg_bin)
  user=$(pg_user)
  mkdir -p "$pgdata" "$state/sock"
  # The server account writes its log and socket there; the peer's files are root's.
  chown "$user" "$state" "$pgdata" "$state/sock"
  chmod 700 "$pgdata"

  log "initdb in $pgdata (PostgreSQL $("$bin/postgres" --version | awk '{print $3}'), user $user)"
  as_pg "$user" "$bin/initdb" -D "$pgdata" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
    --no-instructions >"$state/initdb.log" 2>&1 || { cat "$state/initdb.log" >&2; die "initdb failed"; }

  pg_port=$(free_port)
  # Durable: every commit is flushed to disk before it is acknowledged (the defaults,
  # spelled out so a benchmark never runs on a cluster someone relaxed).
  cat >>"$pgdata/postgresql.conf" <<EOF

# --- benches/peers/run-peer.sh ---
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$state/sock'
fsync = on
synchronous_commit = on
full_page_writes = on
wal_sync_method = fdatasync
EOF
  log "starting PostgreSQL on 127.0.0.1:$pg_port"
  as_pg "$user" "$bin/pg_ctl" start -D "$pgdata" -l "$state/postgres.log" -w -t 60 \
    </dev/null >&2 || { tail -20 "$state/postgres.log" >&2 || true; die "PostgreSQL did not start"; }
  head -1 "$pgdata/postmaster.pid" >"$state/postgres.pid"
  as_pg "$user" "$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres "$database" >&2

  port=$(free_port)
  url=http://127.0.0.1:$port
  export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/$database"
  log "starting the peer on $url"
  nohup "$binary" --listen "127.0.0.1:$port" </dev/null >"$state/peer.log" 2>&1 &
  pid=$!
  echo "$pid" >"$state/peer.pid"
  cat >"$state/peer.env" <<EOF
PEER_URL=$url
PEER_PID=$pid
DATABASE_URL=$DATABASE_URL
PG_PORT=$pg_port
EOF
  for _ in $(seq 300); do
    if [[ $(curl -s -o /dev/null -w '%{http_code}' "$url/readyz" 2>/dev/null) == 200 ]]; then
      log "ready"
      echo "$url"
      return
    fi
    alive "$pid" || break
    sleep 0.1
  done
  tail -20 "$state/peer.log" >&2 || true
  cmd_stop
  die "the peer did not become ready"
}

case ${1:-} in
  build) cmd_build ;;
  check) cmd_check ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  *) echo "usage: $0 build|check|start|stop" >&2; exit 2 ;;
esac
