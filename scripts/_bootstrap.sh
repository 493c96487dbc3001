# Shared by scripts/demo and scripts/test: create .venv and install sortpoint.
# Usage: . scripts/_bootstrap.sh EXTRAS   (EXTRAS like "dev" or "postgres")
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "sortpoint needs Python >= 3.11 (found: $("$PY" --version 2>&1))" >&2; exit 1; }
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "$PY" -m venv "$ROOT/.venv"
fi
VENV_PY="$ROOT/.venv/bin/python"
STAMP="$ROOT/.venv/.sortpoint-installed-$1"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
    # pip's and setuptools' chatter goes to a log, shown only if the install fails
    LOG="$ROOT/.venv/install.log"
    echo "installing sortpoint[$1] into .venv (log: .venv/install.log)" >&2
    if ! { "$VENV_PY" -m pip install --upgrade pip && "$VENV_PY" -m pip install -e "$ROOT[$1]"; } >"$LOG" 2>&1; then
        tail -n 40 "$LOG" >&2
        echo "sortpoint: installing into .venv failed (full log: $LOG)" >&2
        exit 1
    fi
    touch "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
