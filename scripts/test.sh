#!/usr/bin/env bash
# README command 2 (and .ci/run): set up on a fresh clone if needed, then run every check.
# Slow tests (marked `slow`) and real-cluster tests (`e2e`) are not part of this run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
py=.venv/bin/python
echo "== generated code drift"
"$py" scripts/gen_proto.py --check
if [ -f scripts/gen_crds.py ]; then "$py" scripts/gen_crds.py --check; fi
"$py" scripts/sync_chart_crds.py --check
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy --strict"
.venv/bin/mypy trainer-image/src operator/src
echo "== pytest"
exec "$py" -m pytest -m "not slow and not e2e" -p no:cacheprovider "$@"
