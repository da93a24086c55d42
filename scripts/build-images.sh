#!/usr/bin/env bash
# Build Sluice's container images with the local Docker engine (started by scripts/ensure-docker.sh if needed):
#
#   sluice/spark-jobs:<version>  images/spark-jobs/Dockerfile: the jobs and generator on Spark, Kafka connector in
#   sluice/operator:<version>    images/operator/Dockerfile: the kopf operator
#   sluice/kafka:<kafka version> images/kafka/Dockerfile: Kafka from the pinned Maven jars, an offline stand-in
#                                for apache/kafka honouring the sluice-kafka chart's contract
#
# <version> is the project's version in pyproject.toml. The base image is the offline stand-in for Debian's
# bookworm-slim built by scripts/build-base-image.sh, unless `--base IMAGE` names another one (e.g. the public
# debian:bookworm-slim where a registry is reachable).
#
# Nothing is downloaded inside a build: the Python dependencies, pinned in pyproject.toml, are fetched on the host
# as wheels for the images' CPython 3.11 on manylinux x86_64 into ${SLUICE_CACHE_DIR:-~/.cache/sluice}/wheels/<hash>
# (pyspark is an sdist on PyPI: its pure-Python wheel is built once), the connector jars come from the jar cache
# (sluice_local.artifacts), and each image is built from a prepared context directory, not the repository root.
#
# Each image carries the label dev.sluice.inputs, a hash of everything it is built from (Dockerfile, base image,
# wheels, the project's sources, jars, version). An image whose hash matches is not rebuilt: a warm run takes
# about a second. A cold run takes a few minutes.
#
# Usage: scripts/build-images.sh [--base IMAGE] [--rebuild]
# Prints `spark-jobs=<image>`, `operator=<image>` and `kafka=<image>` on stdout; progress goes to stderr.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_root=${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}
python=${PYTHON:-python3.11}
label=dev.sluice.inputs
# The pip that downloads the wheels (pinned like the Makefile's), in its own virtualenv in the cache.
pip_version=25.3
# What each image installs from pyproject.toml's dependencies (the project wheel itself goes in without them).
spark_jobs_requirements=(pyspark confluent-kafka prometheus-client pyyaml)
operator_requirements=(kopf kubernetes confluent-kafka prometheus-client pyyaml)
# The images run Debian bookworm's CPython 3.11 with glibc 2.36: any manylinux wheel up to 2_36 fits.
platform_args=(--implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none)
platform_args+=(--platform manylinux2014_x86_64)
for glibc_minor in $(seq 17 36); do platform_args+=(--platform "manylinux_2_${glibc_minor}_x86_64"); done

base=""
rebuild=false

say() { echo "build-images: $*" >&2; }
die() {
  echo "build-images: error: $*" >&2
  exit 1
}
usage_error() {
  echo "build-images: error: $1; accepted arguments: --base IMAGE (default: build sluice/debian-base:bookworm)," \
    "--rebuild, --help" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --base)
      if [ $# -lt 2 ] || [ -z "$2" ]; then
        usage_error "--base needs an image name, e.g. --base debian:bookworm-slim"
      fi
      base=$2
      shift 2
      ;;
    --base=*)
      base=${1#--base=}
      [ -n "$base" ] || usage_error "--base needs an image name, e.g. --base debian:bookworm-slim"
      shift
      ;;
    --rebuild)
      rebuild=true
      shift
      ;;
    -h | --help)
      sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done

started=$SECONDS
hash_text() { sha256sum | cut -c1-16; }
image_size() { docker image inspect -f '{{ .Size }}' "$1" | awk '{ printf "%.0f MB", $1 / 1e6 }'; }

command -v "$python" >/dev/null 2>&1 ||
  die "$python is needed (it reads pyproject.toml and runs pip); install Python 3.11, or set PYTHON to one"

bash "$repo_root/scripts/ensure-docker.sh"
mkdir -p "$cache_root"
exec 9>"$cache_root/.build-images.lock"
if ! flock -n 9; then
  say "another run holds $cache_root/.build-images.lock; waiting for it"
  flock 9
fi
# A docker client without the buildx plugin can only use the classic builder, and must be told so.
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi

if [ -z "$base" ]; then
  base=$(bash "$repo_root/scripts/build-base-image.sh" | sed -n 's/^base=//p')
  [ -n "$base" ] || die "scripts/build-base-image.sh did not name the base image it built"
elif ! docker image inspect "$base" >/dev/null 2>&1; then
  say "pulling the base image $base"
  docker pull "$base" >&2 ||
    die "the base image $base is neither present locally nor pullable; drop --base to build an offline one"
fi
base_id=$(docker image inspect -f '{{ .Id }}' "$base")

# --- what the images are built from ---------------------------------------------------------------------------

# pyproject.toml's version, then the pinned requirement of each NAME given (`name==version`).
read_project() {
  "$python" - "$repo_root/pyproject.toml" "$@" <<'EOF'
import re
import sys
import tomllib

with open(sys.argv[1], "rb") as handle:
    project = tomllib.load(handle)["project"]
pins = {re.split(r"[\s=<>!~;\[]", dep, maxsplit=1)[0].lower(): dep for dep in project["dependencies"]}
print(project["version"])
for name in sys.argv[2:]:
    if name not in pins or "==" not in pins[name]:
        sys.exit(f"pyproject.toml has no exact pin (name==version) for {name}: {pins.get(name)!r}")
    print(pins[name].replace(" ", ""))
EOF
}

version=$(read_project | head -n 1)
source_url=$(git -C "$repo_root" config --get remote.origin.url 2>/dev/null || true)

# The project's sources that go into its wheel, one per line, relative to the repository root.
project_files() {
  (cd "$repo_root" && find pyproject.toml README.md spark_jobs sluice_local operator -type f \
    -not -path '*/__pycache__/*' -not -name '*.py[co]' | LC_ALL=C sort)
}
project_hash=$(cd "$repo_root" && project_files | while IFS= read -r file; do
  echo "$file"
  cat "$file"
done | hash_text)

builder_venv=$cache_root/venvs/image-wheels-pip$pip_version
builder_pip() { "$builder_venv/bin/pip" --disable-pip-version-check "$@"; }
ensure_builder_venv() {
  [ -x "$builder_venv/bin/pip" ] && [ -f "$builder_venv/.complete" ] && return 0
  say "creating the wheel-building virtualenv $builder_venv (pip $pip_version)"
  rm -rf "$builder_venv"
  "$python" -m venv "$builder_venv" || die "$python -m venv failed (Debian: apt-get install -y python3.11-venv)"
  "$builder_venv/bin/pip" install --quiet --disable-pip-version-check "pip==$pip_version" >&2
  touch "$builder_venv/.complete"
}

# wheelhouse PIN...: a cache directory holding wheels of the pins and all their dependencies for the images'
# platform; printed on stdout. Downloaded once per set of pins, into a temp dir renamed into place when complete.
wheelhouse() {
  local key dir tmp pin wheel
  key=$(printf '%s\n' "pip $pip_version" "${platform_args[*]}" "$@" | hash_text)
  dir=$cache_root/wheels/$key
  if [ -f "$dir/.complete" ]; then
    echo "$dir"
    return 0
  fi
  ensure_builder_venv
  mkdir -p "$cache_root/wheels"
  (
    flock 8
    [ -f "$dir/.complete" ] && exit 0
    tmp=$(mktemp -d "$cache_root/wheels/.tmp-$key.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    for pin in "$@"; do
      # A pin with no binary wheel on PyPI (pyspark) is built here once; it must be pure Python to fit the image.
      if ! builder_pip download --quiet --no-deps --only-binary=:all: "${platform_args[@]}" -d "$tmp" "$pin" \
        >/dev/null 2>&1; then
        say "building a wheel of $pin (no binary wheel on the index)"
        builder_pip wheel --quiet --no-deps -w "$tmp" "$pin" >&2 || die "pip could neither download nor build $pin"
      fi
    done
    builder_pip download --quiet --only-binary=:all: "${platform_args[@]}" --find-links "$tmp" -d "$tmp" "$@" >&2 ||
      die "pip could not download the dependencies of $* for CPython 3.11 manylinux x86_64"
    # A wheel built here for this machine (linux_x86_64) may not run on the images' older glibc.
    for wheel in "$tmp"/*.whl; do
      case "${wheel##*/}" in
        *-none-any.whl | *manylinux*) ;;
        *) die "${wheel##*/} is neither pure Python nor manylinux, so it may not run in the images" ;;
      esac
    done
    (cd "$tmp" && ls -- *.whl >.complete)
    rm -rf "$dir"
    mv "$tmp" "$dir"
    trap - EXIT
  ) 8>"$cache_root/wheels/.$key.lock"
  [ -f "$dir/.complete" ] || die "the wheelhouse $dir was not completed"
  echo "$dir"
}

project_wheel_dir=""
project_wheel() {
  [ -n "$project_wheel_dir" ] && return 0
  local src
  project_wheel_dir=$work/project
  src=$work/project-src
  say "building the project's wheel"
  mkdir -p "$src" "$project_wheel_dir"
  (cd "$repo_root" && project_files | tar -cf - -T - | tar -C "$src" -xf -) ||
    die "could not copy the project's sources"
  ensure_builder_venv
  builder_pip wheel --quiet --no-deps -w "$project_wheel_dir" "$src" >&2 || die "building the project's wheel failed"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

# up_to_date TAG INPUTS: whether TAG exists and was built from INPUTS (its label); says so if it was.
up_to_date() {
  local built
  built=$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null || true)
  if ! $rebuild && [ "$built" = "$2" ]; then
    say "skipped $1: up to date (inputs $2)"
    return 0
  fi
  return 1
}

# build_context TAG INPUTS CONTEXT: docker-build the prepared CONTEXT directory as TAG, labelled with INPUTS, then
# remove the context, the build stage's image and the image TAG named before.
build_context() {
  local tag=$1 inputs=$2 context=$3 old_id step_started=$SECONDS
  old_id=$(docker image inspect -f '{{ .Id }}' "$tag" 2>/dev/null || true)
  say "building $tag from $base (inputs $inputs)"
  docker build --build-arg "BASE_IMAGE=$base" --build-arg "SOURCE=$source_url" ${4:+--build-arg "VERSION=$4"} \
    --label "$label=$inputs" -t "$tag" "$context" >&2 || die "docker build of $tag failed (output above)"
  rm -rf "$context"
  # The build stage's image is left behind by the classic builder; it only held the wheels and the venv's build.
  docker image prune --force --filter "label=dev.sluice.stage=build" >/dev/null || true
  # The image this one replaces is now untagged; remove it unless a container still uses it.
  if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{ .Id }}' "$tag")" ]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi
  say "built $tag in $((SECONDS - step_started)) s ($(image_size "$tag"))"
}

# build_image NAME TAG EXTRA_INPUTS REQUIREMENT_NAMES...: build images/NAME as TAG from a prepared context (the files
# of images/NAME, requirements.txt, wheels/, project/, and for spark-jobs jars/) unless TAG exists with the same
# inputs.
build_image() {
  local name=$1 tag=$2 extra_inputs=$3 pins wheels inputs context
  shift 3
  mapfile -t pins < <(read_project "$@" | tail -n +2)
  [ ${#pins[@]} -eq $# ] || die "could not read the pins of $* from pyproject.toml"
  wheels=$(wheelhouse "${pins[@]}")
  inputs=$({
    echo "$tag"
    cd "$repo_root/images/$name" && find . -type f | LC_ALL=C sort | xargs sha256sum
    echo "$base_id ${wheels##*/} $project_hash $version $source_url $extra_inputs"
  } | hash_text)
  if ! up_to_date "$tag" "$inputs"; then
    project_wheel
    context=$work/context-$name
    mkdir -p "$context/wheels" "$context/project"
    cp -r "$repo_root/images/$name/." "$context/"
    printf '%s\n' "${pins[@]}" >"$context/requirements.txt"
    cp -l "$wheels"/*.whl "$context/wheels/" 2>/dev/null || cp "$wheels"/*.whl "$context/wheels/"
    cp "$project_wheel_dir"/*.whl "$context/project/"
    if [ "$name" = spark-jobs ]; then cp -r "$work/jars" "$context/jars"; fi
    build_context "$tag" "$inputs" "$context" "$version"
  fi
  echo "$name=$tag"
}

# build_kafka_image TAG KAFKA_VERSION: images/kafka (its Dockerfile, bin/ and config/) with the `kafka-dist` jars as
# libs/, unless TAG exists with the same inputs.
build_kafka_image() {
  local tag=$1 kafka_version=$2 inputs context
  context=$work/context-kafka
  mkdir -p "$context/libs"
  PYTHONPATH=$repo_root "$python" -m sluice_local.artifacts fetch kafka-dist --dest "$context/libs" >/dev/null ||
    die "could not fetch the Kafka jars (python -m sluice_local.artifacts fetch kafka-dist)"
  cp -r "$repo_root/images/kafka/Dockerfile" "$repo_root/images/kafka/bin" "$repo_root/images/kafka/config" "$context/"
  inputs=$({
    echo "$tag $base_id $source_url"
    cd "$context" && find . -type f | LC_ALL=C sort | xargs sha256sum
  } | hash_text)
  if up_to_date "$tag" "$inputs"; then
    rm -rf "$context"
  else
    build_context "$tag" "$inputs" "$context" "$kafka_version"
  fi
  echo "kafka=$tag"
}

# The connector jars, resolved into the jar cache by the project's own resolver (standard library only).
mkdir -p "$work/jars"
PYTHONPATH=$repo_root "$python" -m sluice_local.artifacts fetch connector --dest "$work/jars" >/dev/null ||
  die "could not fetch the Kafka connector jars (python -m sluice_local.artifacts fetch connector)"
jars_hash=$(cd "$work/jars" && sha256sum -- *.jar | hash_text)

build_image spark-jobs "sluice/spark-jobs:$version" "jars $jars_hash" "${spark_jobs_requirements[@]}"
build_image operator "sluice/operator:$version" "" "${operator_requirements[@]}"
kafka_version=$(PYTHONPATH=$repo_root "$python" -c 'from sluice_local.artifacts import KAFKA_VERSION; print(KAFKA_VERSION)')
build_kafka_image "sluice/kafka:$kafka_version" "$kafka_version"
say "done in $((SECONDS - started)) s"
