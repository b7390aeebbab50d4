#!/usr/bin/env bash
# Starts or stops two regions on loopback (issue 20, docs/REGIONS.md): `eu` and `us`, each a
# NATS cluster of REGION_SERVERS servers (default 1; 3 makes a cluster with routes) with its own
# JetStream domain (`domain: eu` / `domain: us`), `sync_interval: always`, one user and password
# for both, and a leafnode link: every `us` server dials `eu`'s leafnode listeners (`eu` is the
# hub). `no_advertise: true` on the leafnode listeners: else a remote learns the hub's URLs and
# redials them directly (around a proxy or a load balancer).
#
# Usage: scripts/nats-regions.sh start DIR    (waits until JetStream answers and the link is up)
#        scripts/nats-regions.sh stop DIR
# DIR holds each server's config, store, log and pid (eu-n1/, us-n1/, ...), the credentials
# file `creds`, and `regions.env` (EU_URLS, EU_MONITOR_URLS, US_URLS, US_MONITOR_URLS,
# comma-separated).
# Ports (NATS_BASE_PORT, default 15222): region r (eu 0, us 1), server i (1-based): clients
# BASE+10r+i-1, leafnodes BASE+100+10r+i-1, monitoring BASE+200+10r+i-1, routes BASE+300+10r+i-1.
# MLTRADER_NATS_SERVER: the executable (default: PATH, then target/nats-venv/bin/nats-server).
# To put a WAN between them by hand, point the `us` servers' remotes at a proxy (the tests use
# mltrader_nats::testing::WanProxy).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
CMD=$1
DIR=$2
BASE=${NATS_BASE_PORT:-15222}
SERVERS=${REGION_SERVERS:-1}
REGIONS="eu us"
ROOT=$(cd "$(dirname "$0")/.." && pwd)

region_index() { case $1 in eu) echo 0 ;; us) echo 1 ;; esac; }
port() { echo $((BASE + $1 + 10 * $(region_index "$2") + $3 - 1)); }  # offset region server
client_port() { port 0 "$1" "$2"; }
leaf_port() { port 100 "$1" "$2"; }
monitor_port() { port 200 "$1" "$2"; }
route_port() { port 300 "$1" "$2"; }

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

cred() { sed -n "s/^$1 = \"\(.*\)\"$/\1/p" "$DIR/creds"; }

write_config() {
    local r=$1 i=$2 j routes="" remotes=""
    mkdir -p "$DIR/$r-n$i"
    for j in $(seq 1 "$SERVERS"); do
        [ "$j" = "$i" ] || routes="$routes${routes:+, }nats-route://127.0.0.1:$(route_port "$r" "$j")"
    done
    if [ "$r" = us ]; then
        for j in $(seq 1 "$SERVERS"); do
            remotes="$remotes${remotes:+, }\"nats-leaf://$(cred user):$(cred password)@127.0.0.1:$(leaf_port eu "$j")\""
        done
    fi
    {
        echo "server_name: $r-n$i"
        echo "listen: 127.0.0.1:$(client_port "$r" "$i")"
        echo "http: 127.0.0.1:$(monitor_port "$r" "$i")"
        echo "jetstream { store_dir: \"$DIR/$r-n$i/store\", sync_interval: always, domain: $r }"
        echo "authorization { user: \"$(cred user)\", password: \"$(cred password)\" }"
        if [ "$SERVERS" -gt 1 ]; then
            echo "cluster { name: $r, listen: 127.0.0.1:$(route_port "$r" "$i"), routes: [ $routes ] }"
        fi
        echo "leafnodes {"
        echo "    listen: 127.0.0.1:$(leaf_port "$r" "$i")"
        echo "    no_advertise: true"
        echo "    authorization { user: \"$(cred user)\", password: \"$(cred password)\" }"
        [ -z "$remotes" ] || echo "    reconnect: 1"
        # No object store subjects across the link: every region has a bucket mlt_snapshots, and
        # a put is a plain publish on \$O.<bucket>.> (the server denies \$KV.> between domains, not
        # \$O.>): without this one region's snapshots land in the other's bucket (docs/REGIONS.md).
        [ -z "$remotes" ] || echo "    remotes [ { urls: [ $remotes ], deny_imports: [ \"\$O.>\" ], deny_exports: [ \"\$O.>\" ] } ]"
        echo "}"
    } >"$DIR/$r-n$i/server.conf"
}

# Succeeds when every server's /healthz answers 200 and eu holds a leafnode connection.
ready() {
    local r i leafs=0
    for r in $REGIONS; do
        for i in $(seq 1 "$SERVERS"); do
            python3 - "http://127.0.0.1:$(monitor_port "$r" "$i")/healthz" 2>/dev/null <<'PY' || return 1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=1)
PY
        done
    done
    for i in $(seq 1 "$SERVERS"); do
        leafs=$((leafs + $(python3 - "http://127.0.0.1:$(monitor_port eu "$i")/leafz" 2>/dev/null <<'PY' || echo 0
import json, sys, urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1], timeout=1)).get("leafnodes", 0))
PY
)))
    done
    [ "$leafs" -gt 0 ]
}

urls() {
    local r=$1 kind=$2 i out=""
    for i in $(seq 1 "$SERVERS"); do
        if [ "$kind" = client ]; then out="$out${out:+,}nats://127.0.0.1:$(client_port "$r" "$i")"
        else out="$out${out:+,}http://127.0.0.1:$(monitor_port "$r" "$i")"; fi
    done
    echo "$out"
}

start() {
    local bin r i
    bin=$(server_bin)
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    write_creds
    for r in $REGIONS; do
        for i in $(seq 1 "$SERVERS"); do
            write_config "$r" "$i"
            if [ -f "$DIR/$r-n$i/pid" ] && kill -0 "$(cat "$DIR/$r-n$i/pid")" 2>/dev/null; then
                echo "$r-n$i already runs (pid $(cat "$DIR/$r-n$i/pid"))" >&2
                continue
            fi
            "$bin" -c "$DIR/$r-n$i/server.conf" >>"$DIR/$r-n$i/server.log" 2>&1 &
            echo $! >"$DIR/$r-n$i/pid"
        done
    done
    printf 'EU_URLS=%s\nEU_MONITOR_URLS=%s\nUS_URLS=%s\nUS_MONITOR_URLS=%s\n' \
        "$(urls eu client)" "$(urls eu monitor)" "$(urls us client)" "$(urls us monitor)" \
        >"$DIR/regions.env"
    for _ in $(seq 1 300); do
        if ready; then
            echo "regions eu and us up in $DIR: $(tr '\n' ' ' <"$DIR/regions.env")"
            return 0
        fi
        sleep 0.1
    done
    echo "regions not ready after 30 s (logs: $DIR/*/server.log)" >&2
    stop
    exit 1
}

stop() {
    local r i pid
    for r in $REGIONS; do
        for i in $(seq 1 "$SERVERS"); do
            [ -f "$DIR/$r-n$i/pid" ] || continue
            pid=$(cat "$DIR/$r-n$i/pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
            rm -f "$DIR/$r-n$i/pid"
        done
    done
}

case "$CMD" in
    start) start ;;
    stop) [ -d "$DIR" ] || { echo "$DIR: no such regions directory" >&2; exit 1; }; stop ;;
    *) usage ;;
esac
