#!/usr/bin/env bash
# Sluice on a local kind cluster.
#
#   scripts/kind.sh up     create the cluster (k8s/kind-config.yaml), build the images, `kind load` them, and
#                          helm-install charts/sluice (Kafka, Spark, the operator) with k8s/kind-values.yaml
#   scripts/kind.sh create create the cluster only (or reuse it), with nothing installed
#   scripts/kind.sh demo   apply a sample StreamingPipeline, wait until it runs, print its windowed results and
#                          alerts read from Kafka on the host (localhost:30092)
#   scripts/kind.sh down   delete the cluster
#
# helm, kind and kubectl are built from pinned Go modules (scripts/build-deploy-tools.sh, scripts/build-kube.sh);
# the images by scripts/build-images.sh with the local Docker engine.
#
# Environment:
#   SLUICE_KIND_CLUSTER     cluster name (default sluice)
#   SLUICE_KIND_CONFIG      kind's cluster config (default k8s/kind-config.yaml: one node, two host ports;
#                           k8s/kind-config-workers.yaml adds two workers and storage they share: a config that
#                           mounts /var/lib/sluice-shared gets the ReadWriteMany claim sluice-shared of
#                           k8s/kind-shared-storage.yaml and the values of k8s/kind-values-workers.yaml)
#   SLUICE_KIND_SHARED_DIR  the host directory such a config's nodes mount there (default /tmp/sluice-kind-shared)
#   SLUICE_KIND_NODE_IMAGE  node image (default kindest/node:v1.34.0, pulled by kind if absent); `offline` builds
#                           and uses sluice/kind-node:v1.34.4 (scripts/build-kind-node.sh): no registry needed
#   SLUICE_KAFKA_IMAGE      Kafka image for the chart (default: sluice/kafka from scripts/build-images.sh, loaded
#                           into the node like the other images; apache/kafka:4.1.1 makes the node pull the public one)
#   SLUICE_NAMESPACE        namespace of the release and the samples (default sluice)
#   SLUICE_SAMPLE           pipeline the demo applies (default k8s/kind-pipeline.yaml: minimal, sized for kind)
#   SLUICE_DEMO_TIMEOUT     seconds the demo waits for the first record of each output topic (default 300)
#   KUBECONFIG              where kind writes the cluster's credentials (kind's default: ~/.kube/config)
#   PYTHON                  the project's Python (for the demo's Kafka reader; default .venv/bin/python)
#
# kind runs with scripts/kind-docker first on PATH: on hosts whose root lacks a capability Docker grants to
# --privileged containers (runc then refuses them all), it runs the nodes with the capabilities there are.
# The node's kubelet sets some host-wide sysctls (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops); `up`
# records them and `down` puts them back.
#
# Exit status: 0 done, 1 failed, 2 bad usage, 3 kind could not create the cluster because the node image is
# neither present nor pullable (the message has kind's error).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cluster=${SLUICE_KIND_CLUSTER:-sluice}
node_image=${SLUICE_KIND_NODE_IMAGE:-kindest/node:v1.34.0}
config=${SLUICE_KIND_CONFIG:-$repo_root/k8s/kind-config.yaml}
namespace=${SLUICE_NAMESPACE:-sluice}
sample=${SLUICE_SAMPLE:-$repo_root/k8s/kind-pipeline.yaml}
demo_timeout=${SLUICE_DEMO_TIMEOUT:-300}
python=${PYTHON:-$repo_root/.venv/bin/python}
release=sluice
shared_mount=/var/lib/sluice-shared
shared_dir=${SLUICE_KIND_SHARED_DIR:-/tmp/sluice-kind-shared}
shared=false
state_dir=${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}/kind-state
kind_sysctls=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)

say() { echo "kind.sh: $*" >&2; }
die() {
  echo "kind.sh: error: $*" >&2
  exit 1
}

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
}

# Paths of the pinned tools, from the build scripts' NAME=PATH lines.
tool_paths() {
  local line
  while IFS= read -r line; do
    case $line in
      helm=*) helm=${line#helm=} ;;
      kind=*) kind=${line#kind=} ;;
      kubectl=*) kubectl=${line#kubectl=} ;;
    esac
  done < <(bash "$repo_root/scripts/build-deploy-tools.sh"; bash "$repo_root/scripts/build-kube.sh")
  if [ -z "${helm:-}" ] || [ -z "${kind:-}" ] || [ -z "${kubectl:-}" ]; then
    die "could not build helm, kind and kubectl"
  fi
}

# kind with the docker wrapper first on PATH (see above).
kind_() {
  PATH="$repo_root/scripts/kind-docker:$PATH" "$kind" "$@"
}

# The local image's id (short): as a pod annotation it rolls the pods when a rebuilt image keeps its tag.
image_id() {
  docker image inspect -f '{{ .Id }}' "$1" | sed 's/^sha256://' | cut -c1-16
}

cluster_exists() {
  kind_ get clusters 2>/dev/null | grep -qxF "$cluster"
}

# What a node needs of the host: a `kind` network (made IPv4-only here: kind would ask for a dual-stack one, which
# hosts without IPv6 routing refuse), inotify limits for the node's systemd and kubelet; and a record of the
# sysctls the kubelet will change.
prepare_host() {
  if ! docker network inspect kind >/dev/null 2>&1; then
    docker network create --driver bridge --ipv6=false kind >/dev/null
  fi
  if [ "$(id -u)" -eq 0 ]; then
    [ "$(sysctl -n fs.inotify.max_user_watches)" -ge 524288 ] || sysctl -qw fs.inotify.max_user_watches=524288
    [ "$(sysctl -n fs.inotify.max_user_instances)" -ge 512 ] || sysctl -qw fs.inotify.max_user_instances=512
  fi
  mkdir -p "$state_dir"
  if [ ! -f "$state_dir/$cluster.sysctl" ]; then
    local name
    for name in "${kind_sysctls[@]}"; do echo "$name=$(sysctl -n "$name")"; done >"$state_dir/$cluster.sysctl"
  fi
}

restore_host() {
  local file=$state_dir/$cluster.sysctl
  [ -f "$file" ] || return 0
  if [ "$(id -u)" -eq 0 ] && ! kind_ get clusters 2>/dev/null | grep -q .; then
    sysctl -q -p "$file" >/dev/null || say "could not restore the sysctls in $file"
  fi
  rm -f "$file"
}

kube() {
  "$kubectl" --context "kind-$cluster" "$@"
}

create() {
  tool_paths
  [ -f "$config" ] || die "kind config $config not found (SLUICE_KIND_CONFIG)"
  # A config whose nodes share a host directory: made here, writable by the pods' user (185), sticky.
  local node_config=$config
  if grep -qF "containerPath: $shared_mount" "$config"; then
    shared=true
    mkdir -p "$shared_dir"
    chmod 1777 "$shared_dir"
    node_config=$(mktemp --suffix=.yaml)
    sed "s#hostPath: /tmp/sluice-kind-shared#hostPath: $shared_dir#" "$config" >"$node_config"
  fi
  bash "$repo_root/scripts/ensure-docker.sh" >/dev/null
  if [ "$node_image" = offline ]; then
    say "building the offline node image (scripts/build-kind-node.sh)"
    node_image=$(SLUICE_KIND_NODE_IMAGE='' bash "$repo_root/scripts/build-kind-node.sh" | sed -n 's/^node-image=//p')
    [ -n "$node_image" ] || die "scripts/build-kind-node.sh did not name the node image it built"
  fi
  prepare_host
  if cluster_exists; then
    say "cluster $cluster exists; reusing it"
    kind_ export kubeconfig --name "$cluster" >&2
  else
    say "creating cluster $cluster with node image $node_image and config $config"
    local log
    log=$(mktemp)
    if ! kind_ create cluster --name "$cluster" --image "$node_image" \
      --config "$node_config" --wait 180s 2>&1 | tee "$log" >&2; then
      if ! docker image inspect "$node_image" >/dev/null 2>&1; then
        echo "kind.sh: kind cannot create a cluster: node image $node_image is not present and could not be pulled" \
          "(SLUICE_KIND_NODE_IMAGE=offline builds one here)." >&2
        echo "kind.sh: kind said: $(grep -iE 'error|fail' "$log" | tail -n 3 | tr '\n' ' ')" >&2
        rm -f "$log"
        kind_ delete cluster --name "$cluster" >/dev/null 2>&1 || true
        restore_host
        exit 3
      fi
      rm -f "$log"
      die "kind create cluster failed (output above)"
    fi
    rm -f "$log"
  fi
  if [ "$node_config" != "$config" ]; then rm -f "$node_config"; fi
}

up() {
  create
  say "building the images"
  local images spark_image operator_image kafka_image
  images=$(bash "$repo_root/scripts/build-images.sh")
  spark_image=$(sed -n 's/^spark-jobs=//p' <<<"$images")
  operator_image=$(sed -n 's/^operator=//p' <<<"$images")
  kafka_image=${SLUICE_KAFKA_IMAGE:-$(sed -n 's/^kafka=//p' <<<"$images")}
  if [ -z "$spark_image" ] || [ -z "$operator_image" ]; then
    die "build-images.sh printed no image names: $images"
  fi
  local load=("$spark_image" "$operator_image")
  # A local Kafka image is loaded; a public one (not in the local Docker) is left for the node to pull.
  if docker image inspect "$kafka_image" >/dev/null 2>&1; then load+=("$kafka_image"); fi
  say "loading ${load[*]} into $cluster"
  kind_ load docker-image --name "$cluster" "${load[@]}" >&2

  say "installing charts/sluice as release $release in namespace $namespace"
  kube create namespace "$namespace" --dry-run=client -o yaml | kube apply -f - >/dev/null
  # Pipelines and charts both meet PodSecurity "restricted".
  kube label --overwrite namespace "$namespace" pod-security.kubernetes.io/enforce=restricted >/dev/null
  # Helm installs CRDs but never upgrades them: apply the chart's copy so an existing cluster gets new fields.
  kube apply --server-side --force-conflicts -f "$repo_root/charts/sluice-operator/crds/" >/dev/null
  local values=(--values "$repo_root/k8s/kind-values.yaml")
  if $shared; then
    say "creating the shared ReadWriteMany claim sluice-shared ($shared_dir on every node)"
    kube apply --namespace "$namespace" -f "$repo_root/k8s/kind-shared-storage.yaml" >/dev/null
    values+=(--values "$repo_root/k8s/kind-values-workers.yaml")
  fi
  "$helm" dependency build "$repo_root/charts/sluice" >&2
  "$helm" upgrade --install "$release" "$repo_root/charts/sluice" --kube-context "kind-$cluster" \
    --namespace "$namespace" "${values[@]}" \
    --set "spark.image.repository=${spark_image%:*}" --set "spark.image.tag=${spark_image##*:}" \
    --set "operator.image.repository=${operator_image%:*}" --set "operator.image.tag=${operator_image##*:}" \
    --set-string "spark.podAnnotations.sluice\.dev/image-id=$(image_id "$spark_image")" \
    --set-string "operator.podAnnotations.sluice\.dev/image-id=$(image_id "$operator_image")" \
    --set "kafka.image.repository=${kafka_image%:*}" --set "kafka.image.tag=${kafka_image##*:}" \
    --wait --timeout 10m >&2
  "$helm" test "$release" --kube-context "kind-$cluster" --namespace "$namespace" --timeout 5m >&2
  say "ready: kubectl --context kind-$cluster -n $namespace get pods; next: make kind-demo"
}

demo() {
  tool_paths
  cluster_exists || die "no kind cluster $cluster: run make kind-up first"
  [ -f "$sample" ] || die "sample $sample not found; samples are in $repo_root/k8s/samples/"
  if ! [[ $demo_timeout =~ ^[1-9][0-9]*$ ]]; then
    echo "kind.sh: error: SLUICE_DEMO_TIMEOUT must be a whole number of seconds (1 or more), got '$demo_timeout'" >&2
    exit 2
  fi
  local name
  name=$(awk '/^metadata:/ { m = 1; next } m && /^  name:/ { print $2; exit }' "$sample")
  [ -n "$name" ] || die "$sample has no metadata.name"
  say "applying $sample (StreamingPipeline $name) in namespace $namespace"
  kube apply --namespace "$namespace" -f "$sample" >&2
  say "waiting for $name to be Running (first start pulls nothing but takes a minute or two)"
  if ! kube wait --namespace "$namespace" --for=jsonpath='{.status.phase}'=Running \
    "streamingpipeline/$name" --timeout 10m >&2; then
    kube get --namespace "$namespace" streamingpipeline "$name" -o yaml >&2 || true
    kube get --namespace "$namespace" pods -l "streaming.sluice.dev/pipeline=$name" >&2 || true
    die "$name did not reach phase Running within 10 min (its status and pods are above)"
  fi
  kube get --namespace "$namespace" streamingpipelines >&2
  kube get --namespace "$namespace" pods -l "streaming.sluice.dev/pipeline=$name" >&2
  local topics
  topics=$(kube get --namespace "$namespace" streamingpipeline "$name" \
    -o jsonpath='{.spec.kafka.topics.windowed.name} {.spec.kafka.topics.alerts.name}')
  # shellcheck disable=SC2086 # two topic names
  "$python" -m sluice_local peek --bootstrap localhost:30092 --timeout "$demo_timeout" --show 5 $topics
}

down() {
  tool_paths
  if cluster_exists; then
    kind_ delete cluster --name "$cluster" >&2
  else
    say "no cluster $cluster"
  fi
  restore_host
}

case "${1:-}" in
  up) up ;;
  create) create ;;
  demo) demo ;;
  down) down ;;
  -h | --help) usage ;;
  *)
    echo "kind.sh: error: unknown command '${1:-}'; accepted: up, create, demo, down" >&2
    usage
    exit 2
    ;;
esac
