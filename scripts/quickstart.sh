#!/usr/bin/env bash
# README command 1: set up on a fresh clone if needed, write a small synthetic 3-hospital
# dataset, then train examples/quickstart.yaml with `fedcare run`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
if [ ! -f data/quickstart/site-3.csv ]; then
  .venv/bin/fedcare data synth --sites 3 --rows 20000 --out data/quickstart
fi
exec .venv/bin/fedcare run examples/quickstart.yaml "$@"
