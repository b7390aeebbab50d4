#!/usr/bin/env bash
# Schemathesis against a live `mltrader serve`: property-based requests generated from
# /openapi.json (valid and invalid ones), each answer checked against the document with every
# check (`--checks all`). Fails on any disagreement between the document and the server.
#
# The server runs on a new temporary data directory, on loopback, with instant travel (no
# request waits for a landing) and with the per-token and join rate limits off: Schemathesis
# sends hundreds of requests with one token, and a 429 (documented on every operation) would
# only hide the answers it should check. This relaxation is for this test only.
#
# Usage: scripts/schemathesis.sh [extra schemathesis args]
# Environment: SCHEMATHESIS_MAX_EXAMPLES (default 20 per operation), SCHEMATHESIS_SEED,
# SCHEMATHESIS_VENV (default target/schemathesis-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: a newer Schemathesis may check more, which is welcome, but in its own commit.
SCHEMATHESIS_VERSION=4.32.5
VENV=${SCHEMATHESIS_VENV:-target/schemathesis-venv}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-20}
SEED=${SCHEMATHESIS_SEED:-1}

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    echo "== installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

echo "== building mltrader"
cargo build --quiet --bin mltrader
BIN=target/debug/mltrader

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

MLTRADER_TOKEN_RATE=off MLTRADER_JOIN_RATE=off MLTRADER_IP_RATE=off \
    "$BIN" serve --data "$WORK/data" --listen 127.0.0.1:0 --ticks-per-ly 0 \
    >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

URL=
for _ in $(seq 1 300); do
    URL=$(sed -n 's/.* on \(http:\/\/[0-9.:]*\).*/\1/p' "$WORK/server.log" | head -n 1)
    [ -n "$URL" ] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        cat "$WORK/server.log"
        echo "the server did not start" >&2
        exit 1
    fi
    sleep 0.1
done
[ -n "$URL" ] || { cat "$WORK/server.log"; echo "the server did not print its address" >&2; exit 1; }
echo "== server at $URL"

# One player's token for the authenticated operations.
TOKEN=$(curl -sf -X POST "$URL/v1/join" -H 'content-type: application/json' \
    -d '{"name":"schemathesis"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

echo "== schemathesis $SCHEMATHESIS_VERSION: --checks all, at most $MAX_EXAMPLES examples per operation, seed $SEED"
status=0
"$VENV/bin/schemathesis" run "$URL/openapi.json" \
    --checks all \
    --header "Authorization: Bearer $TOKEN" \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --generation-database none \
    --request-timeout 10 \
    --workers 2 \
    --no-color \
    "$@" 2>&1 | tee "$WORK/schemathesis.log" || status=$?

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "the server died during the run:" >&2
    tail -n 50 "$WORK/server.log" >&2
    exit 1
fi
# One closing line with the count, for whoever reads CI's output.
cases=$(sed -n 's/^ *\([0-9][0-9]*\) generated.*/\1/p' "$WORK/schemathesis.log" | tail -n 1)
if [ "$status" -eq 0 ] && [ -n "$cases" ]; then
    echo "schemathesis: $cases passed, 0 failed"
fi
exit "$status"
