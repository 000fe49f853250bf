#!/usr/bin/env bash
# Create (or reuse) .venv and install fedcare + fedcare-operator editable with their dev extras.
# Idempotent: a second run only checks that what the first installed is still there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
stamp="$venv/.fedcare-installed"
want="$(cat trainer-image/pyproject.toml operator/pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
# torch first and pinned: 2.13.0 is the CPU build on this machine's disk; anything else pulls CUDA.
"$py" -m pip install --quiet "torch==2.13.0"
"$py" -m pip install --quiet -e "trainer-image[train,dev,s3]" -e "operator[dev]"
"$py" -m pip check
echo "$want" >"$stamp"
