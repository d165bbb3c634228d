#!/usr/bin/env bash
# The other OpenAI instrumentations, each in its own virtualenv beside llmmeter, for
# tests/integration/test_other_instrumentations.py (`make coexist-venvs`; .ci/run runs it).
#
#     bash tests/coexist/setup.sh [NAME ...]      (default: every tests/coexist/requirements/*.txt)
#
# build/coexist/NAME/ gets this repository (editable) and the exact versions pinned in
# tests/coexist/requirements/NAME.txt, from PyPI. Idempotent: a virtualenv whose requirement
# files and pyproject.toml are unchanged since it was built (.pins.sha256 in it) is kept;
# any change rebuilds it from scratch. Installs run two at a time (the machine has two
# cores). Progress and timings go to stderr; a failed install prints pip's output and the
# script exits 1. From scratch all six take about 75 s here; pip's download cache hardly
# matters (the time goes to unpacking and llmmeter's editable build).
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON="${PYTHON:-python3}"
BUILD=build/coexist
REQS=tests/coexist/requirements
JOBS="${COEXIST_JOBS:-2}"

say() { echo "coexist/setup.sh: $*" >&2; }

if [ $# -eq 0 ]; then
    set -- $(cd "$REQS" && ls [!_]*.txt | sed 's/\.txt$//')
fi

# The digest a virtualenv was built from: its requirement file, the shared ones it includes,
# and pyproject.toml (llmmeter is editable, but its dependencies are installed from it).
digest() {
    cat "$REQS/$1.txt" "$REQS"/_*.txt pyproject.toml | sha256sum | cut -d' ' -f1
}

build() {
    local name=$1 home="$BUILD/$1" started wanted
    started=$(date +%s)
    wanted=$(digest "$name")
    if [ -x "$home/bin/python" ] && [ "$(cat "$home/.pins.sha256" 2>/dev/null)" = "$wanted" ]; then
        say "$name: up to date"
        return 0
    fi
    rm -rf "$home"
    mkdir -p "$BUILD"
    "$PYTHON" -m venv "$home"
    # pip's output is kept and shown only when the install fails. --no-compile: byte-compiling
    # every file took a third of the time; the test compiles only what it imports.
    if ! "$home/bin/python" -m pip install -q --disable-pip-version-check --no-compile \
        -e . -r "$REQS/$name.txt" > "$home/pip.log" 2>&1; then
        say "ERROR: installing $name failed; pip said:"
        grep -v '^WARNING: Location' "$home/pip.log" | tail -40 >&2
        rm -rf "$home"
        return 1
    fi
    echo "$wanted" > "$home/.pins.sha256"
    say "$name: built in $(($(date +%s) - started)) s"
}

started=$(date +%s)
failed=0
running=0
for name in "$@"; do
    if [ ! -f "$REQS/$name.txt" ]; then
        say "ERROR: no $REQS/$name.txt"
        exit 1
    fi
    build "$name" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
say "done in $(($(date +%s) - started)) s"
exit "$failed"
