#!/usr/bin/env bash
# Build the operator and runtime images (what multi-cluster.sh and single-cluster.sh do first).
#   kind-cluster/build-images.sh
#   FEDCARE_TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 kind-cluster/build-images.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"

need docker
build_images
docker image ls --filter "reference=${OPERATOR_IMAGE%:*}" --filter "reference=${RUNTIME_IMAGE%:*}"
