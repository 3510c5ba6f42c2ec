#!/usr/bin/env bash
# Run pytest from the project venv. pytest's exit code 5 ("no tests collected") is a failure here:
# a suite that silently finds nothing must not pass.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/.venv/bin/python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "make test: pytest collected no tests; failing." >&2
    exit 1
fi
exit "$rc"
