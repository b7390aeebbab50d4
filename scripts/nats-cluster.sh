#!/usr/bin/env bash
# Starts or stops a local three-node NATS JetStream cluster on loopback, the engine of
# docs/NATS.md: cluster routes between the three, JetStream with `sync_interval: always` (every
# acknowledged write is fsynced before the ack; the default syncs every 2 minutes), a user and
# password, and a monitoring port on each node (the mesh's safety check reads /varz there).
#
# Usage: scripts/nats-cluster.sh start DIR    (waits until a JetStream meta leader is elected)
#        scripts/nats-cluster.sh stop DIR     (SIGTERM, then waits for the three to end)
# DIR holds each node's config, store, log and pid (n1/ n2/ n3/), the credentials file
# `creds` (`user = ...`, `password = ...`; written once with a random password, kept across
# restarts) and `cluster.env` (NATS_URLS and NATS_MONITOR_URLS, comma-separated).
# Environment: NATS_BASE_PORT (default 14222): client ports BASE..BASE+2, routes BASE+100..,
# monitoring BASE+200..; MLTRADER_NATS_SERVER (the executable; default: PATH, then
# target/nats-venv/bin/nats-server from scripts/nats-install.sh).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
CMD=$1
DIR=$2
BASE=${NATS_BASE_PORT:-14222}
NODES="1 2 3"
ROOT=$(cd "$(dirname "$0")/.." && pwd)

client_port() { echo $((BASE + $1 - 1)); }
route_port() { echo $((BASE + 100 + $1 - 1)); }
monitor_port() { echo $((BASE + 200 + $1 - 1)); }

server_bin() {
    if [ -n "${MLTRADER_NATS_SERVER:-}" ]; then echo "$MLTRADER_NATS_SERVER"
    elif command -v nats-server >/dev/null; then command -v nats-server
    elif [ -x "$ROOT/target/nats-venv/bin/nats-server" ]; then echo "$ROOT/target/nats-venv/bin/nats-server"
    else echo "nats-server not found: run scripts/nats-install.sh, or set MLTRADER_NATS_SERVER" >&2; exit 1
    fi
}

write_creds() {
    [ -f "$DIR/creds" ] && return
    local password
    password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    umask 077
    printf 'user = "mltrader"\npassword = "%s"\n' "$password" >"$DIR/creds"
}

# The value of `key` in the credentials file.
cred() { sed -n "s/^$1 = \"\(.*\)\"$/\1/p" "$DIR/creds"; }

write_config() {
    local i=$1 routes="" j
    for j in $NODES; do
        [ "$j" = "$i" ] || routes="$routes${routes:+, }nats-route://127.0.0.1:$(route_port "$j")"
    done
    mkdir -p "$DIR/n$i"
    cat >"$DIR/n$i/server.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$(client_port "$i")
http: 127.0.0.1:$(monitor_port "$i")
jetstream {
    store_dir: "$DIR/n$i/store"
    sync_interval: always
}
authorization {
    user: "$(cred user)"
    password: "$(cred password)"
}
cluster {
    name: mlt
    listen: 127.0.0.1:$(route_port "$i")
    routes: [ $routes ]
}
CONF
}

# The name of the JetStream meta leader, as any node's /jsz reports it (fails if none yet).
meta_leader() {
    local i
    for i in $NODES; do
        python3 - "http://127.0.0.1:$(monitor_port "$i")/jsz" 2>/dev/null <<'PY' && return 0
import json, sys, urllib.request
leader = json.load(urllib.request.urlopen(sys.argv[1], timeout=1)).get("meta_cluster", {}).get("leader")
print(leader) if leader else sys.exit(1)
PY
    done
    return 1
}

start() {
    local bin i leader
    bin=$(server_bin)
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    write_creds
    for i in $NODES; do
        write_config "$i"
        if [ -f "$DIR/n$i/pid" ] && kill -0 "$(cat "$DIR/n$i/pid")" 2>/dev/null; then
            echo "n$i already runs (pid $(cat "$DIR/n$i/pid"))" >&2
            continue
        fi
        "$bin" -c "$DIR/n$i/server.conf" >>"$DIR/n$i/server.log" 2>&1 &
        echo $! >"$DIR/n$i/pid"
    done
    printf 'NATS_URLS=%s\nNATS_MONITOR_URLS=%s\n' \
        "$(for i in $NODES; do printf 'nats://127.0.0.1:%s,' $(client_port "$i"); done | sed 's/,$//')" \
        "$(for i in $NODES; do printf 'http://127.0.0.1:%s,' $(monitor_port "$i"); done | sed 's/,$//')" \
        >"$DIR/cluster.env"
    for _ in $(seq 1 300); do
        if leader=$(meta_leader); then
            echo "JetStream cluster up in $DIR: meta leader $leader; $(tr '\n' ' ' <"$DIR/cluster.env")"
            return 0
        fi
        for i in $NODES; do
            if ! kill -0 "$(cat "$DIR/n$i/pid")" 2>/dev/null; then
                tail -n 20 "$DIR/n$i/server.log" >&2
                echo "n$i died at start (log: $DIR/n$i/server.log)" >&2
                stop
                exit 1
            fi
        done
        sleep 0.1
    done
    echo "no JetStream meta leader after 30 s (logs: $DIR/n*/server.log)" >&2
    stop
    exit 1
}

stop() {
    local i pid
    for i in $NODES; do
        [ -f "$DIR/n$i/pid" ] || continue
        pid=$(cat "$DIR/n$i/pid")
        kill "$pid" 2>/dev/null || true
    done
    for i in $NODES; do
        [ -f "$DIR/n$i/pid" ] || continue
        pid=$(cat "$DIR/n$i/pid")
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "n$i (pid $pid) still runs after 10 s: SIGKILL" >&2
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$DIR/n$i/pid"
    done
}

case "$CMD" in
    start) start ;;
    stop) [ -d "$DIR" ] || { echo "$DIR: no such cluster directory" >&2; exit 1; }; stop ;;
    *) usage ;;
esac
