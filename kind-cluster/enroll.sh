#!/usr/bin/env bash
# Enroll one more hospital in a running job (after multi-cluster.sh or single-cluster.sh):
#
#   kind-cluster/enroll.sh NAME SITE_CONTEXT SITE_NAMESPACE DATA_PATH \
#       [COORD_CONTEXT [COORD_NAMESPACE]]
#
# e.g. a third hospital with its own kind cluster:
#   kind create cluster --name fedcare-hospital-c --config kind-cluster/config/hospital-a.yaml
#   (load the images, helm install the chart, copy site-3.csv to /data/fedcare on its node)
#   kind-cluster/enroll.sh hospital-c kind-fedcare-hospital-c fedcare /data/fedcare/site-3.csv
#
# The coordinator is reached through its node (multi-cluster mode) when COORD_CONTEXT is the
# fedcare-coordinator cluster, else through its Service's cluster DNS name. The job's
# minParticipants counts the first sites; a later one takes part from the next round.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"

(($# >= 4)) || die "usage: $0 NAME SITE_CONTEXT SITE_NAMESPACE DATA_PATH [COORD_CONTEXT [COORD_NAMESPACE]]"
name="$1"
site_context="$2"
site_namespace="$3"
data_path="$4"
coord_context="${5:-kind-fedcare-coordinator}"
coord_namespace="${6:-fedcare}"

need kubectl base64
if [[ "$coord_context" == kind-fedcare-coordinator ]]; then
  need docker
  address="$(node_ip fedcare-coordinator)"
  endpoint="$address:30051"
  enroll_endpoint="$address:30052"
  server="$SERVER_NAME"
else
  service="$JOB-coordinator.$coord_namespace.svc"
  endpoint="$service:50051"
  enroll_endpoint="$service:50052"
  server="$service"
fi
enroll "$coord_context" "$coord_namespace" "$site_context" "$site_namespace" "$name" \
  "$data_path" "$endpoint" "$enroll_endpoint" "$server"
kubectl --context "$site_context" -n "$site_namespace" get participant "$name"
