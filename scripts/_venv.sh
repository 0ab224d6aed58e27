# Sourced by the other scripts: make .venv (once) and install the project into it.
# Needs only Python 3.11+ on PATH; everything else comes from the package index.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "c9-sync needs Python 3.11 or newer (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
target="."
[ -n "${C9_EXTRAS:-}" ] && target=".[${C9_EXTRAS}]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"
