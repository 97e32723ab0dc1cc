#!/usr/bin/env bash
# Runs the AWS SAM CLI from its own virtualenv (.venv-sam: its pins clash with the project's) and
# puts Python 3.13 first on PATH, because `sam build` builds the python3.13 runtime with that
# interpreter. `tools/sam.sh --install` creates the virtualenv; anything else is passed to `sam`.
#
# Python 3.13 is looked for in $SAM_PYTHON, then `python3.13` on PATH, then pyenv's 3.13.0.
set -euo pipefail

SAM_CLI_VERSION="1.170.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SAMVENV="${SAMVENV:-$ROOT/.venv-sam}"
export PYENV_VERSION="${PYENV_VERSION:-3.13.0}"
# No usage reports from CI or an operator's laptop.
export SAM_CLI_TELEMETRY=0

find_python313() {
    local candidate
    for candidate in "${SAM_PYTHON:-}" python3.13 "${PYENV_ROOT:-$HOME/.pyenv}/versions/3.13.0/bin/python3.13"; do
        [[ -n "$candidate" ]] || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
            "$candidate" -c 'import sys; print(sys.executable)'
            return 0
        fi
    done
    echo "tools/sam.sh: Python 3.13 not found (set SAM_PYTHON to a python3.13 interpreter)" >&2
    return 1
}

PY313="$(find_python313)"
export PATH="$(dirname "$PY313"):$PATH"

if [[ "${1:-}" == "--install" ]]; then
    "$PY313" -m venv "$SAMVENV"
    # constraints-sam.txt pins every transitive dependency: a fresh install is the tested one.
    "$SAMVENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -c "$ROOT/constraints-sam.txt" "aws-sam-cli==$SAM_CLI_VERSION"
    touch "$SAMVENV/.installed"
    exit 0
fi

cd "$ROOT"
exec "$SAMVENV/bin/sam" "$@"
