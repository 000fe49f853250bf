#!/usr/bin/env bash
# Create (or reuse) .venv and install fedcare + fedcare-operator editable with their dev extras.
# Idempotent: a second run only checks that what the first installed is still there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
stamp="$venv/.fedcare-installed"

# Optional: headless Chromium for the dashboard's browser test (tests/integration/
# test_dashboard.py skips without it). Installed only when missing, when running as root with
# apt-get; a failure is reported and never fails the setup. FEDCARE_SKIP_CHROMIUM=1 skips it.
install_chromium() {
  local name log
  for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then return 0; fi
  done
  if [ "${FEDCARE_SKIP_CHROMIUM:-0}" = 1 ]; then return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: no chromium (needs root and apt-get to install); its browser test will skip" >&2
    return 0
  fi
  echo "setup: installing chromium (apt-get) for the dashboard's browser test" >&2
  log="$(mktemp)"
  if ! { apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium fonts-liberation fonts-dejavu-core; } >"$log" 2>&1; then
    tail -n 5 "$log" >&2
    echo "setup: could not install chromium; the dashboard's browser test will skip" >&2
  fi
  rm -f "$log"
}
install_chromium
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
