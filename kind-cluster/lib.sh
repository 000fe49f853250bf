#!/usr/bin/env bash
# Functions shared by the kind-cluster scripts (sourced, not run).
#
# Settings (environment):
#   FEDCARE_OPERATOR_IMAGE   operator image to build and load   (ghcr.io/fedcare/operator:0.1.0)
#   FEDCARE_RUNTIME_IMAGE    runtime image to build and load    (ghcr.io/fedcare/runtime:0.1.0)
#   FEDCARE_TORCH_INDEX_URL  where the runtime image gets torch (the CPU build: small, enough
#                            for kind; https://download.pytorch.org/whl/cu128 for CUDA)
#   FEDCARE_SKIP_BUILD=1     use images already built (docker images) instead of building
#   FEDCARE_KIND_IMAGE       kind node image (kind's default when empty)
#   FEDCARE_TIMEOUT          seconds to wait for the job to end (1800)
#   FEDCARE_ROWS             rows per synthetic hospital table (20000)

# shellcheck disable=SC2034  # variables used by the scripts that source this file
KIND_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$KIND_DIR/.." && pwd)"
CHART="$ROOT/helm-chart/fedcare"
OPERATOR_IMAGE="${FEDCARE_OPERATOR_IMAGE:-ghcr.io/fedcare/operator:0.1.0}"
RUNTIME_IMAGE="${FEDCARE_RUNTIME_IMAGE:-ghcr.io/fedcare/runtime:0.1.0}"
TORCH_INDEX_URL="${FEDCARE_TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
TIMEOUT="${FEDCARE_TIMEOUT:-1800}"
ROWS="${FEDCARE_ROWS:-20000}"
# Where the operator runs in every cluster, and the job of the demo.
OPERATOR_NAMESPACE=fedcare-system
JOB=readmission
# The hospitals' tables live in this node folder (a hostPath volume, read-only in the pods).
DATA_DIR=/data/fedcare
# A name in the coordinator certificate's SANs that does not depend on how it is reached.
SERVER_NAME=fedcare-coordinator
# The coordinator's token store (fedcare_operator.builders.TOKENS_FILE).
TOKENS_FILE=/var/lib/fedcare/tokens.json

log() {
  printf '\n\033[1m==> %s\033[0m\n' "$*" >&2
}

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# need CMD...: fail early, naming what is missing.
need() {
  local cmd missing=()
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
  done
  if ((${#missing[@]})); then
    die "missing: ${missing[*]} (see README.md, 'Deploy on Kubernetes')"
  fi
}

# build_images: both images, from the repository root (unless FEDCARE_SKIP_BUILD=1).
build_images() {
  if [[ "${FEDCARE_SKIP_BUILD:-0}" == 1 ]]; then
    log "Using the images already built: $OPERATOR_IMAGE, $RUNTIME_IMAGE"
    docker image inspect "$OPERATOR_IMAGE" "$RUNTIME_IMAGE" >/dev/null
    return
  fi
  log "Building $OPERATOR_IMAGE (Dockerfile)"
  docker build -t "$OPERATOR_IMAGE" -f "$ROOT/Dockerfile" "$ROOT"
  log "Building $RUNTIME_IMAGE (trainer-image/Dockerfile, torch from $TORCH_INDEX_URL)"
  docker build -t "$RUNTIME_IMAGE" -f "$ROOT/trainer-image/Dockerfile" \
    --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL" "$ROOT"
}

# create_cluster NAME CONFIG: a kind cluster, unless one of that name exists.
create_cluster() {
  local name="$1" config="$2" args=()
  if kind get clusters 2>/dev/null | grep -qx "$name"; then
    log "kind cluster $name exists; reusing it"
    return
  fi
  log "Creating kind cluster $name ($config)"
  args=(create cluster --name "$name" --config "$config" --wait 120s)
  if [[ -n "${FEDCARE_KIND_IMAGE:-}" ]]; then
    args+=(--image "$FEDCARE_KIND_IMAGE")
  fi
  kind "${args[@]}"
}

# load_images CLUSTER: both images into the cluster's nodes (no registry needed).
load_images() {
  log "Loading the images into $1"
  kind load docker-image "$OPERATOR_IMAGE" "$RUNTIME_IMAGE" --name "$1"
}

# install_operator CONTEXT [HELM_ARGS...]: the chart, with the images built here.
install_operator() {
  local context="$1"
  shift
  log "Installing the fedcare chart in $context"
  helm upgrade --install fedcare "$CHART" \
    --kube-context "$context" --namespace "$OPERATOR_NAMESPACE" --create-namespace \
    --set "image.repository=${OPERATOR_IMAGE%:*}" --set "image.tag=${OPERATOR_IMAGE##*:}" \
    --set "runtimeImage.repository=${RUNTIME_IMAGE%:*}" \
    --set "runtimeImage.tag=${RUNTIME_IMAGE##*:}" \
    --wait --timeout 5m "$@"
}

# synth_data DIR: three synthetic, non-IID hospital tables (site-1.csv ... site-3.csv), made
# by the runtime image itself (no Python needed on this machine).
synth_data() {
  local dir="$1"
  mkdir -p "$dir"
  log "Writing synthetic hospital tables to $dir"
  docker run --rm --user "$(id -u):$(id -g)" -e HOME=/tmp -v "$dir:/out" "$RUNTIME_IMAGE" \
    data synth --sites 3 --rows "$ROWS" --out /out
  chmod -R a+rX "$dir"
}

# copy_data NODE FILE...: files into DATA_DIR on a kind node, readable by the pods' user.
copy_data() {
  local node="$1" file
  shift
  docker exec "$node" mkdir -p "$DATA_DIR"
  for file in "$@"; do
    docker cp "$file" "$node:$DATA_DIR/"
  done
  docker exec "$node" chmod -R a+rX "$DATA_DIR"
}

# node_ip CLUSTER: the control-plane node's address in Docker's "kind" network.
node_ip() {
  docker inspect -f '{{ (index .NetworkSettings.Networks "kind").IPAddress }}' \
    "$1-control-plane"
}

# ensure_namespace CONTEXT NAMESPACE
ensure_namespace() {
  kubectl --context "$1" create namespace "$2" --dry-run=client -o yaml \
    | kubectl --context "$1" apply -f -
}

# apply_job CONTEXT NAMESPACE: the demo's FederatedJob, then wait for its coordinator.
apply_job() {
  local context="$1" namespace="$2" deadline
  log "Applying FederatedJob $JOB in $context/$namespace"
  kubectl --context "$context" -n "$namespace" apply -f "$KIND_DIR/manifests/readmission.yaml"
  deadline=$((SECONDS + 300))
  until kubectl --context "$context" -n "$namespace" get "deployment/$JOB-coordinator" \
    >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "the operator created no coordinator for $JOB in 300 s"
    sleep 2
  done
  kubectl --context "$context" -n "$namespace" rollout status "deployment/$JOB-coordinator" \
    --timeout 10m
}

# participant_manifest NAME JOB DATA_PATH ENDPOINT ENROLL_ENDPOINT SERVER_NAME: the
# Participant of a hospital that enrolls at a coordinator outside its namespace or cluster.
participant_manifest() {
  local name="$1" job="$2" data_path="$3" endpoint="$4" enroll_endpoint="$5" server="$6"
  cat <<EOF
apiVersion: fedcare.io/v1alpha1
kind: Participant
metadata:
  name: $name
  labels:
    app.kubernetes.io/part-of: fedcare
spec:
  job:
    name: $job
    endpoint: "$endpoint"
  data:
    path: $data_path
  volume:
    hostPath: $DATA_DIR
  resources:
    cpu: "1"
    memory: 1Gi
  enrollment:
    tokenSecret: $name-token
    endpoint: "$enroll_endpoint"
    serverName: $server
EOF
}

# enroll COORD_CONTEXT COORD_NAMESPACE SITE_CONTEXT SITE_NAMESPACE NAME DATA_PATH ENDPOINT
#        ENROLL_ENDPOINT SERVER_NAME
# Issues a one-time token for NAME at the job's coordinator, stores it with the job CA's
# certificate in the site's Secret NAME-token, and creates the site's Participant: its operator
# then enrolls (key and CSR never leave the site), stores the certificate, starts the trainer.
enroll() {
  local cc="$1" cns="$2" sc="$3" sns="$4" name="$5" data_path="$6" endpoint="$7"
  local enroll_endpoint="$8" server="$9" secrets
  log "Enrolling $name ($sc/$sns) at $cc/$cns"
  secrets="$(mktemp -d)"
  # The token is a credential: files (mode 600), not command-line arguments.
  chmod 700 "$secrets"
  kubectl --context "$cc" -n "$cns" exec "deployment/$JOB-coordinator" -- \
    fedcare token create "$JOB" --participant "$name" --tokens "$TOKENS_FILE" \
    >"$secrets/token"
  kubectl --context "$cc" -n "$cns" get secret "$JOB-ca" -o 'jsonpath={.data.ca\.crt}' \
    | base64 -d >"$secrets/ca.crt"
  [[ -s "$secrets/token" && -s "$secrets/ca.crt" ]] || die "no token or CA certificate for $name"
  ensure_namespace "$sc" "$sns"
  kubectl --context "$sc" -n "$sns" create secret generic "$name-token" \
    --from-file=token="$secrets/token" --from-file=ca.crt="$secrets/ca.crt" \
    --dry-run=client -o yaml | kubectl --context "$sc" -n "$sns" apply -f -
  rm -rf "$secrets"
  participant_manifest "$name" "$JOB" "$data_path" "$endpoint" "$enroll_endpoint" "$server" \
    | kubectl --context "$sc" -n "$sns" apply -f -
}

# watch_job CONTEXT NAMESPACE: `kubectl get fedjobs -w` until the job succeeds or fails.
watch_job() {
  local context="$1" namespace="$2" phase="" deadline watcher
  log "Watching: kubectl --context $context -n $namespace get fedjobs -w"
  kubectl --context "$context" -n "$namespace" get fedjobs -w &
  watcher=$!
  deadline=$((SECONDS + TIMEOUT))
  while [[ "$phase" != Succeeded && "$phase" != Failed ]]; do
    if ((SECONDS >= deadline)); then
      kill "$watcher" 2>/dev/null || true
      die "$JOB is still ${phase:-Pending} after $TIMEOUT s"
    fi
    sleep 5
    phase="$(kubectl --context "$context" -n "$namespace" get fedjob "$JOB" \
      -o 'jsonpath={.status.phase}' 2>/dev/null || true)"
  done
  kill "$watcher" 2>/dev/null || true
  wait "$watcher" 2>/dev/null || true
  log "FederatedJob $JOB: $phase"
  kubectl --context "$context" -n "$namespace" get fedjobs
  [[ "$phase" == Succeeded ]]
}
