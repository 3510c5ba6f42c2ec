#!/usr/bin/env bash
# Run pytest from the project venv. pytest's exit code 5 ("no tests collected") is a failure here:
# a suite that silently finds nothing must not pass.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Lint and format first (ruff.toml): cheap, and a failure names the file and line.
"$root/.venv/bin/ruff" check "$root" || exit 1
"$root/.venv/bin/ruff" format --check "$root" || { echo "make test: run .venv/bin/ruff format ." >&2; exit 1; }
# Most of the suite waits on processes and DDS, not the CPU: three workers (pytest-xdist), each file on one
# worker (its module fixtures start nodes and builds once). SAVI_TEST_WORKERS=0 runs in this process.
"$root/.venv/bin/python" -m pytest -n "${SAVI_TEST_WORKERS:-3}" --dist loadfile "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "make test: pytest collected no tests; failing." >&2
    exit 1
fi
exit "$rc"
