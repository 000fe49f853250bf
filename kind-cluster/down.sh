#!/usr/bin/env bash
# Delete the kind clusters of multi-cluster.sh and single-cluster.sh (whichever exist).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"

need kind
existing="$(kind get clusters 2>/dev/null || true)"
for cluster in fedcare-coordinator fedcare-hospital-a fedcare-hospital-b fedcare; do
  if grep -qx "$cluster" <<<"$existing"; then
    log "Deleting kind cluster $cluster"
    kind delete cluster --name "$cluster"
  fi
done
