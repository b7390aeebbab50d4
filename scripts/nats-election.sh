#!/bin/bash
# What a JetStream election does to a serving node and its standby (docs/NATS.md, "Around an
# election"): starts a 3-node cluster and two `mltrader serve --nats` nodes, SIGKILLs the
# nats-server leading the lease bucket's stream, and prints, as they change, the status codes
# of both nodes' GET /v1/status (polled every 100 ms for about 40 s), then what each node said.
#
#   scripts/nats-election.sh [LEASE_MS]       (default 5000)
#
# Environment: NATS_BASE_PORT (default 21000; the nodes listen on BASE+500 and BASE+501),
# MLTRADER_BIN (default target/debug/mltrader), MLTRADER_NATS_SERVER (as nats-cluster.sh).
# By hand only: it measures, it asserts nothing.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LEASE=${1:-5000}
BASE=${NATS_BASE_PORT:-21000}
BIN=${MLTRADER_BIN:-$ROOT/target/debug/mltrader}
D=$(mktemp -d /tmp/mlt-election.XXXXXX)
PA=$((BASE + 500)); PB=$((BASE + 501))
NATS_BASE_PORT=$BASE bash "$ROOT/scripts/nats-cluster.sh" start "$D/c" >/dev/null || exit 1
. "$D/c/cluster.env"
PIDS=()
for n in a b; do
  port=$([ $n = a ] && echo $PA || echo $PB)
  "$BIN" serve --data "$D/$n" --nats "$NATS_URLS" --creds "$D/c/creds" --node $n \
    --nats-monitor "$NATS_MONITOR_URLS" --listen 127.0.0.1:$port --lease-ms "$LEASE" \
    > "$D/$n.out" 2>&1 &
  PIDS+=($!)
done
code() { curl -s -m 1 -o /dev/null -w '%{http_code}' "localhost:$1/v1/status"; }
for _ in $(seq 1 300); do
  st="$(code $PA)$(code $PB)"
  [ "$st" = 200503 ] || [ "$st" = 503200 ] && break
  sleep 0.2
done
leader=$(curl -s "localhost:$((BASE + 200))/jsz?streams=true" | python3 -c '
import json, sys
for a in json.load(sys.stdin).get("account_details", []):
    for s in a.get("stream_detail", []):
        if s["name"] == "KV_mlt_leases":
            print(s["cluster"]["leader"])')
echo "lease ${LEASE} ms; before: a=${st:0:3} b=${st:3:3}; KV_mlt_leases leader: $leader"
t0=$(date +%s.%N)
kill -9 "$(cat "$D/c/$leader/pid")"
last=""
for _ in $(seq 1 300); do
  st="a=$(code $PA) b=$(code $PB)"
  [ "$st" != "$last" ] && echo "+$(echo "$(date +%s.%N) - $t0" | bc | cut -c1-5) s after the kill: $st" && last=$st
  sleep 0.1
done
for n in a b; do echo "--- node $n said:"; grep -v '^connections\|^file desc' "$D/$n.out"; done
kill "${PIDS[@]}" 2>/dev/null
sleep 1
bash "$ROOT/scripts/nats-cluster.sh" stop "$D/c" >/dev/null
rm -rf "$D"
