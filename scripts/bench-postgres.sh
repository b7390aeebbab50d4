#!/usr/bin/env bash
# mltrader's durable jumps against PostgreSQL's, on this machine, by hand (CI never runs it).
#
# Installs PostgreSQL from Debian if it is missing, creates a throwaway cluster with initdb in a
# scratch directory, starts it on a private unix socket with the durable defaults (fsync=on,
# synchronous_commit=on, full_page_writes=on), runs
#     target/release/mltrader-bench postgres --url <that server> [your arguments]
# and stops and removes the cluster at the end, whatever happens.
#
#     scripts/bench-postgres.sh --size small            # about a minute
#     scripts/bench-postgres.sh --size large --json     # --clients 16,64,256 is the default
#
# The cluster and mltrader's scratch data sit in one directory under $MLTRADER_BENCH_DIR
# (default /var/tmp), so both sides fsync to the same disk; it must not be a tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "bench-postgres: $*" >&2; }

# Root runs commands itself; anyone else through sudo (installing is the only such step).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian keeps the server's programs (initdb, pg_ctl) under /usr/lib/postgresql/<major>/bin.
server_bin_dir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

bindir=$(server_bin_dir || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    say "PostgreSQL is not installed: apt-get install -y postgresql"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bindir=$(server_bin_dir)
fi
say "PostgreSQL server programs: $bindir ($("$bindir/postgres" --version))"

if [ ! -x target/release/mltrader-bench ]; then
    say "building mltrader-bench: cargo build --release --workspace"
    cargo build --release --workspace
fi

# initdb and the server refuse to run as root: root runs them as the postgres user (the
# Debian package creates it), anyone else as themselves.
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    as_server() { runuser -u postgres -- "$@"; }
else
    as_server() { "$@"; }
fi

base=${MLTRADER_BENCH_DIR:-/var/tmp}
if [ "$(stat -f -c %T "$base")" = tmpfs ]; then
    say "$base is a tmpfs (memory): an fsync there costs nothing, so neither side's figure"
    say "would mean anything. Set MLTRADER_BENCH_DIR to a directory on the disk to measure."
    exit 1
fi
work=$(mktemp -d "$base/mltrader-pg.XXXXXX")
data="$work/pgdata"
port=54329
cleanup() {
    if [ -f "$data/postmaster.pid" ]; then
        say "stopping the cluster"
        as_server "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    say "removed $work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$work"
fi

say "initdb: a throwaway cluster in $data"
as_server "$bindir/initdb" -D "$data" --username=postgres --auth=trust --no-locale \
    --encoding=UTF8 >"$work/initdb.log" 2>&1 || {
    cat "$work/initdb.log" >&2
    exit 1
}
# Only a unix socket in the scratch directory (no TCP port), so it disturbs no other server.
# The durability settings are PostgreSQL's defaults, written out so the run says what it ran.
# 300 connections: the 256-client run plus the benchmark's own.
cat >>"$data/postgresql.conf" <<EOF

# mltrader-bench postgres
listen_addresses = ''
unix_socket_directories = '$work'
port = $port
max_connections = 300
fsync = on
synchronous_commit = on
full_page_writes = on
EOF

say "starting it: unix socket in $work, port $port, fsync=on, synchronous_commit=on, full_page_writes=on"
as_server "$bindir/pg_ctl" -D "$data" -l "$work/server.log" -w -t 60 start >/dev/null || {
    cat "$work/server.log" >&2
    exit 1
}
for _ in $(seq 1 60); do
    "$bindir/pg_isready" -q -h "$work" -p "$port" && break
    sleep 1
done
"$bindir/pg_isready" -h "$work" -p "$port" >&2

url="host=$work port=$port user=postgres dbname=postgres"
say "running: target/release/mltrader-bench postgres --url '$url' $*"
status=0
target/release/mltrader-bench postgres --url "$url" --dir "$work" "$@" || status=$?
exit "$status"
