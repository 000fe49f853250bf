#!/usr/bin/env bash
# The lighter mode: one kind cluster, three namespaces (fedcare-coordinator, hospital-a,
# hospital-b) standing for the consortium and two hospitals.
#
#   kind-cluster/single-cluster.sh          # one operator for the whole cluster
#   kind-cluster/single-cluster.sh --per-namespace-operators
#                                           # one namespaced operator per institution (the
#                                           # chart's namespaced: true; Roles only)
#   kind-cluster/down.sh
#
# The hospitals enroll exactly as across clusters (one-time token, Secret, Participant with
# spec.enrollment), reaching the coordinator by its Service's cluster DNS name.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"

per_namespace=0
case "${1:-}" in
  "") ;;
  --per-namespace-operators) per_namespace=1 ;;
  *) die "usage: $0 [--per-namespace-operators]" ;;
esac

need docker kind kubectl helm base64
cluster=fedcare
context="kind-$cluster"
coordinator_ns=fedcare-coordinator
hospitals=(hospital-a hospital-b)

build_images
create_cluster "$cluster" "$here/config/single.yaml"
load_images "$cluster"
for namespace in "$coordinator_ns" "${hospitals[@]}"; do
  ensure_namespace "$context" "$namespace"
done
if ((per_namespace)); then
  for namespace in "$coordinator_ns" "${hospitals[@]}"; do
    OPERATOR_NAMESPACE="$namespace" install_operator "$context" --set namespaced=true
  done
else
  install_operator "$context"
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
synth_data "$workdir/data"
log "Copying the hospitals' tables to the node"
copy_data "$cluster-control-plane" "$workdir/data/site-1.csv" "$workdir/data/site-2.csv"

apply_job "$context" "$coordinator_ns"
service="$JOB-coordinator.$coordinator_ns.svc"
site=1
for hospital in "${hospitals[@]}"; do
  enroll "$context" "$coordinator_ns" "$context" "$hospital" "$hospital" \
    "$DATA_DIR/site-$site.csv" "$service:50051" "$service:50052" "$service"
  site=$((site + 1))
done

cat >&2 <<INFO

Both hospitals enrolled. While the job trains:
  kubectl --context $context get participants -A
  kubectl --context $context -n $coordinator_ns port-forward svc/$JOB-coordinator 8080:8080
  # then http://localhost:8080/ (dashboard), /status, /metrics
INFO
watch_job "$context" "$coordinator_ns"
kubectl --context "$context" get participants -A
