#!/usr/bin/env bash
# Install and start Arize Phoenix, a real trace backend, for tests/integration/test_phoenix_e2e.py.
#
# Phoenix goes into its own virtualenv (the project's dependencies stay lean), serves HTTP on
# loopback (its gRPC collector has no host setting and listens on all interfaces), keeps its
# data in a temp dir and is told to make no outside requests (no analytics, fonts or
# downloads). It takes OTLP/HTTP at http://127.0.0.1:$PHOENIX_PORT/v1/traces and OTLP/gRPC
# at 127.0.0.1:$PHOENIX_GRPC_PORT, and answers its REST API (GET /v1/projects/{project}/spans)
# on the HTTP port.
#
# Idempotent: an already healthy Phoenix is left running; an installed virtualenv with the
# pinned version is reused. Progress goes to stderr; stdout gets the variables the test needs:
#     LLMMETER_TEST_PHOENIX_URL=http://127.0.0.1:6006
#     LLMMETER_TEST_PHOENIX_GRPC_ENDPOINT=http://127.0.0.1:4317
# and they are also written, as export lines, to $PHOENIX_STATE_DIR/env for .ci/run to source:
#     bash .ci/phoenix.sh
#     . /tmp/llmmeter-phoenix/env
#
# Settings (environment): PHOENIX_VENV, PHOENIX_WORKING_DIR (default: a new temp dir under
# the state dir), PHOENIX_STATE_DIR (/tmp/llmmeter-phoenix: pid, log, env), PHOENIX_PORT
# (6006), PHOENIX_GRPC_PORT (4317), PHOENIX_START_TIMEOUT (seconds, 120).
set -euo pipefail

PHOENIX_VERSION=20.26.1
STATE_DIR="${PHOENIX_STATE_DIR:-/tmp/llmmeter-phoenix}"
VENV="${PHOENIX_VENV:-$STATE_DIR/venv}"
HTTP_PORT="${PHOENIX_PORT:-6006}"
GRPC_PORT="${PHOENIX_GRPC_PORT:-4317}"
TIMEOUT="${PHOENIX_START_TIMEOUT:-120}"
URL="http://127.0.0.1:$HTTP_PORT"
PYTHON="${PYTHON:-python3}"
LOG="$STATE_DIR/phoenix.log"
PIDFILE="$STATE_DIR/phoenix.pid"

say() { echo "phoenix.sh: $*" >&2; }
started=$(date +%s)
mkdir -p "$STATE_DIR"

# True when the HTTP port answers /healthz and the gRPC port accepts connections.
healthy() {
    "$PYTHON" - "$URL" "$GRPC_PORT" <<'EOF' 2>/dev/null
import socket, sys, urllib.request
url, grpc_port = sys.argv[1], int(sys.argv[2])
with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
    assert r.status == 200
socket.create_connection(("127.0.0.1", grpc_port), timeout=2).close()
EOF
}

done_line() {
    local lines="LLMMETER_TEST_PHOENIX_URL=$URL
LLMMETER_TEST_PHOENIX_GRPC_ENDPOINT=http://127.0.0.1:$GRPC_PORT"
    sed 's/^/export /' <<< "$lines" > "$STATE_DIR/env"
    echo "$lines"
}

if healthy; then
    say "Phoenix is already running and healthy at $URL (gRPC :$GRPC_PORT)"
    done_line
    exit 0
fi

# --- install -------------------------------------------------------------------------------
installed=""
if [ -x "$VENV/bin/phoenix" ]; then
    installed=$("$VENV/bin/python" -c \
        'import importlib.metadata as m; print(m.version("arize-phoenix"))' 2>/dev/null || true)
fi
if [ "$installed" = "$PHOENIX_VERSION" ]; then
    say "arize-phoenix $PHOENIX_VERSION already installed in $VENV"
else
    say "installing arize-phoenix==$PHOENIX_VERSION into $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    # pip's output is kept in a file and shown only when the install fails.
    if ! { "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip &&
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
            "arize-phoenix==$PHOENIX_VERSION"; } > "$STATE_DIR/pip.log" 2>&1; then
        say "ERROR: installing arize-phoenix==$PHOENIX_VERSION failed; pip said:"
        cat "$STATE_DIR/pip.log" >&2
        rm -rf "$VENV"
        exit 1
    fi
fi
install_done=$(date +%s)
say "install step took $((install_done - started)) s"

# --- start ---------------------------------------------------------------------------------
# A Phoenix of ours that is up but unhealthy (or a stale pid file) is stopped first.
if [ -f "$PIDFILE" ]; then
    old=$(cat "$PIDFILE")
    if kill -0 "$old" 2>/dev/null && grep -q phoenix "/proc/$old/cmdline" 2>/dev/null; then
        say "stopping unhealthy Phoenix (pid $old)"
        kill "$old" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$PIDFILE"
fi
for port in "$HTTP_PORT" "$GRPC_PORT"; do
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
        say "ERROR: port $port is in use by something that is not a healthy Phoenix:"
        ss -ltnp "sport = :$port" >&2 || true
        exit 1
    fi
done

if [ -n "${PHOENIX_WORKING_DIR:-}" ]; then
    WORKING_DIR="$PHOENIX_WORKING_DIR"
else  # a fresh temp dir per start; those of earlier (stopped) runs go
    rm -rf "$STATE_DIR"/data.??????
    WORKING_DIR=$(mktemp -d "$STATE_DIR/data.XXXXXX")
fi
mkdir -p "$WORKING_DIR"
say "starting Phoenix: HTTP $URL, gRPC 127.0.0.1:$GRPC_PORT, data in $WORKING_DIR, log $LOG"
(
    cd "$WORKING_DIR"
    export PHOENIX_WORKING_DIR="$WORKING_DIR"
    export PHOENIX_HOST=127.0.0.1 PHOENIX_PORT="$HTTP_PORT"
    # (The gRPC collector has no host setting: it listens on all interfaces, [::]:$GRPC_PORT.)
    export PHOENIX_GRPC_PORT="$GRPC_PORT"
    export PHOENIX_LOG_MIGRATIONS=false PYTHONUNBUFFERED=1
    # No outside connections: no UI analytics, no web fonts/CDN, no OTel export of its own.
    export PHOENIX_TELEMETRY_ENABLED=false PHOENIX_ALLOW_EXTERNAL_RESOURCES=false
    unset PHOENIX_SQL_DATABASE_URL PHOENIX_COLLECTOR_ENDPOINT OTEL_EXPORTER_OTLP_ENDPOINT \
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT PHOENIX_SERVER_INSTRUMENTATION_OTLP_TRACE_COLLECTOR_HTTP_ENDPOINT \
        PHOENIX_SERVER_INSTRUMENTATION_OTLP_TRACE_COLLECTOR_GRPC_ENDPOINT
    exec setsid "$VENV/bin/phoenix" serve > "$LOG" 2>&1 < /dev/null
) &
echo $! > "$PIDFILE"
pid=$(cat "$PIDFILE")

deadline=$(($(date +%s) + TIMEOUT))
until healthy; do
    if ! kill -0 "$pid" 2>/dev/null; then
        say "ERROR: Phoenix (pid $pid) exited before it became healthy; its log:"
        cat "$LOG" >&2
        exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        say "ERROR: Phoenix (pid $pid) not healthy after ${TIMEOUT}s" \
            "(HTTP $URL/healthz and gRPC :$GRPC_PORT); its log:"
        cat "$LOG" >&2
        kill "$pid" 2>/dev/null || true
        exit 1
    fi
    sleep 0.5
done
ready=$(date +%s)
say "Phoenix $PHOENIX_VERSION healthy (pid $pid): start took $((ready - install_done)) s," \
    "install+start $((ready - started)) s"
done_line
