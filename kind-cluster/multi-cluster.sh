#!/usr/bin/env bash
# A consortium on kind: one coordinator cluster and two hospital clusters.
#
#   kind-cluster/multi-cluster.sh           # build, create, install, enroll, train, watch
#   kind-cluster/down.sh                    # delete the clusters
#
# 1. builds the operator and runtime images (FEDCARE_SKIP_BUILD=1 reuses them);
# 2. creates kind clusters fedcare-coordinator, fedcare-hospital-a, fedcare-hospital-b and loads
#    both images into each;
# 3. installs the Helm chart (CRDs + operator) in every cluster;
# 4. writes three synthetic hospital tables and copies site-1.csv to hospital A's node and
#    site-2.csv to hospital B's (/data/fedcare): each table exists only in its own cluster;
# 5. applies the FederatedJob (manifests/readmission.yaml) in the coordinator cluster and
#    exposes its coordinator on the node (manifests/coordinator-external.yaml);
# 6. enrolls each hospital: a one-time token from the coordinator, a Secret and a Participant
#    in the hospital's cluster, whose operator enrolls and starts the trainer;
# 7. watches `kubectl get fedjobs` until the job succeeds (or fails).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"

need docker kind kubectl helm base64
coordinator=fedcare-coordinator
hospitals=(hospital-a hospital-b)
namespace=fedcare

build_images
create_cluster "$coordinator" "$here/config/coordinator.yaml"
for hospital in "${hospitals[@]}"; do
  create_cluster "fedcare-$hospital" "$here/config/$hospital.yaml"
done
for cluster in "$coordinator" "${hospitals[@]/#/fedcare-}"; do
  load_images "$cluster"
  install_operator "kind-$cluster"
done

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
synth_data "$workdir/data"
site=1
for hospital in "${hospitals[@]}"; do
  log "Copying site-$site.csv to $hospital's node (only there)"
  copy_data "fedcare-$hospital-control-plane" "$workdir/data/site-$site.csv"
  site=$((site + 1))
done

ensure_namespace "kind-$coordinator" "$namespace"
apply_job "kind-$coordinator" "$namespace"
kubectl --context "kind-$coordinator" -n "$namespace" apply \
  -f "$here/manifests/coordinator-external.yaml"
address="$(node_ip "$coordinator")"
[[ -n "$address" ]] || die "no address for the $coordinator node"

site=1
for hospital in "${hospitals[@]}"; do
  enroll "kind-$coordinator" "$namespace" "kind-fedcare-$hospital" "$namespace" "$hospital" \
    "$DATA_DIR/site-$site.csv" "$address:30051" "$address:30052" "$SERVER_NAME"
  site=$((site + 1))
done

cat >&2 <<INFO

Both hospitals enrolled. While the job trains:
  kubectl --context kind-fedcare-hospital-a -n $namespace get participants,pods
  kubectl --context kind-$coordinator -n $namespace port-forward svc/$JOB-coordinator 8080:8080
  # then http://localhost:8080/ (dashboard), /status, /metrics
INFO
watch_job "kind-$coordinator" "$namespace"
for hospital in "${hospitals[@]}"; do
  kubectl --context "kind-fedcare-$hospital" -n "$namespace" get participants
done
