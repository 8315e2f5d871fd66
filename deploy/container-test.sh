#!/usr/bin/env bash
# Build the CPU image with podman and prove it serves: ready, predicts, stops cleanly on SIGTERM;
# as its own user (10001), as root (SageMaker's expectation) and as a uid the image does not
# know with a read-only root filesystem (what another platform may do).
#
#   make container-test            (needs root or rootless podman; installs podman if missing)
#
# No Docker engine is needed: the base image is Debian bookworm made with debootstrap and
# imported into podman (once; reused after), the build runs with --isolation chroot and the
# container with runc. On a machine whose pip reads a local wheel folder (/opt/wheels, the CPU
# torch wheel) or needs the host's CA bundle, both are mounted into the build.
set -euo pipefail

cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/housing-inference:cpu}
BASE=${BASE:-localhost/housing-base:bookworm}
ARTIFACTS=$(realpath "${HOUSING_ARTIFACTS:-artifacts}")
PREFIX=housing-container-test-$$
NAME=$PREFIX
PORT=${PORT:-18080}
GRPC_PORT=${GRPC_PORT:-18081}
# runc sets limits explicitly (it may not raise them above this shell's hard limit).
NOFILE=$(ulimit -Hn)
[ "$NOFILE" = unlimited ] && NOFILE=65536

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; podman logs "$NAME" 2>&1 | tail -30 >&2 || true; exit 1; }

[ -f "$ARTIFACTS/manifest.json" ] || fail "no artifacts in $ARTIFACTS (run make compile first)"
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
  say "installing podman, debootstrap and runc"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap runc >/dev/null
fi

if ! podman image exists "$BASE"; then
  say "making the base image $BASE with debootstrap (a few minutes, once)"
  root=$(mktemp -d /var/tmp/housing-base.XXXXXX)
  debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
    bookworm "$root" http://deb.debian.org/debian >/dev/null
  tar -C "$root" -c . | podman import - "$BASE" >/dev/null
  rm -rf "$root"
fi

say "building $IMAGE"
build_mounts=()
pipconf=$(mktemp)
trap 'rm -f "$pipconf"; podman rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
{
  echo "[global]"
  [ -d /opt/wheels ] && echo "find-links = /opt/wheels"
  [ -f /etc/ssl/certs/ca-certificates.crt ] && echo "cert = /etc/ssl/certs/ca-certificates.crt"
} >"$pipconf"
build_mounts+=(-v "$pipconf:/etc/pip.conf:ro")
[ -d /opt/wheels ] && build_mounts+=(-v /opt/wheels:/opt/wheels:ro)
[ -f /etc/ssl/certs/ca-certificates.crt ] &&
  build_mounts+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
started=$(date +%s)
# --format docker: the OCI format has no HEALTHCHECK.
podman build --format docker --isolation chroot --network host "${build_mounts[@]}" \
  --build-arg VARIANT=cpu --build-arg BASE_IMAGE="$BASE" -t "$IMAGE" . >/tmp/housing-build.log 2>&1 ||
  { tail -30 /tmp/housing-build.log >&2; fail "podman build (log: /tmp/housing-build.log)"; }
echo "built in $(($(date +%s) - started)) s; size $(podman image inspect "$IMAGE" --format '{{.Size}}') bytes"

# start NAME ARGS...: run the image as `serve` with the artifacts mounted read-only at
# /opt/ml/model, wait until /ping answers.
start() {
  local name=$1
  shift
  # --health-interval disable: no systemd timer here; the check is run by hand below.
  podman run -d --name "$name" --runtime runc --network host --health-interval disable \
    --ulimit nofile="$NOFILE:$NOFILE" --ulimit nproc=4096:4096 \
    -e HOUSING_HOST=127.0.0.1 -e HOUSING_PORT="$PORT" -e HOUSING_GRPC_PORT="$GRPC_PORT" \
    -e HOUSING_DEVICE=cpu -v "$ARTIFACTS:/opt/ml/model:ro" "$@" "$IMAGE" >/dev/null
  NAME=$name
  local started
  started=$(date +%s%N)
  for _ in $(seq 1 600); do
    [ "$(podman inspect "$name" --format '{{.State.Running}}')" = true ] || fail "the container exited"
    if curl -sf "http://127.0.0.1:$PORT/ping" >/dev/null; then break; fi
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:$PORT/ping" >/dev/null || fail "never ready"
  echo "ready after $(( ($(date +%s%N) - started) / 1000000 )) ms"
}

predict() {
  local answer
  answer=$(curl -sf "http://127.0.0.1:$PORT/predict" -H 'content-type: application/json' \
    -d '{"longitude": -122.23, "latitude": 37.88, "housing_median_age": 41, "total_rooms": 880,
         "total_bedrooms": 129, "population": 322, "households": 126, "median_income": 8.3252,
         "ocean_proximity": "NEAR BAY"}') || fail "POST /predict"
  echo "POST /predict -> $answer"
  case "$answer" in *'"house_value":'*) ;; *) fail "unexpected answer $answer" ;; esac
}

# stop NAME: SIGTERM, a clean exit within the grace period, the drain in the logs.
stop() {
  local name=$1 started code
  started=$(date +%s%N)
  podman stop --time 30 "$name" >/dev/null
  code=$(podman inspect "$name" --format '{{.State.ExitCode}}')
  echo "stopped in $(( ($(date +%s%N) - started) / 1000000 )) ms, exit code $code"
  [ "$code" = 0 ] || fail "exit code $code after SIGTERM"
  # Not `podman logs | grep -q`: grep's early exit would fail the pipeline (pipefail, SIGPIPE).
  grep -q "readiness is now 503" <<<"$(podman logs "$name" 2>&1)" || fail "no drain in the logs"
  podman rm "$name" >/dev/null
}

say "running it as its own user (serve, artifacts mounted read-only at /opt/ml/model)"
start "$PREFIX-default"
podman healthcheck run "$NAME" || fail "the image's HEALTHCHECK (HTTP /ping and gRPC health) does not pass"
echo "HEALTHCHECK passes"
user=$(podman exec "$NAME" id -u)
[ "$user" = 10001 ] || fail "the server runs as uid $user, not the image's 10001"
echo "runs as uid $user"
predict
csv=$(printf -- '-122.23,37.88,41,880,,322,126,8.3252,NEAR BAY\n' |
  curl -sf "http://127.0.0.1:$PORT/invocations" -H 'content-type: text/csv' --data-binary @-) ||
  fail "POST /invocations"
echo "POST /invocations (text/csv) -> $csv"
# The docs' UI files come from the installed package, not a CDN: they must be in the image.
for asset in swagger-ui-bundle.js swagger-ui.css redoc.standalone.js; do
  curl -sf "http://127.0.0.1:$PORT/docs-assets/$asset" >/dev/null || fail "/docs-assets/$asset"
done
echo "/docs and /redoc assets served from the image"
say "SIGTERM"
stop "$NAME"

# SageMaker's hosting guide expects containers to run as root; some platforms pick a uid of
# their own. Neither may matter: the image is read-only to the server, which writes only /tmp.
say "running it as root (--user 0)"
start "$PREFIX-root" --user 0
user=$(podman exec "$NAME" id -u)
[ "$user" = 0 ] || fail "--user 0 runs as uid $user"
predict
stop "$NAME"

say "running it as a uid the image does not know, with a read-only root filesystem"
start "$PREFIX-other" --user 4242:4242 --read-only --tmpfs /tmp
user=$(podman exec "$NAME" id -u)
[ "$user" = 4242 ] || fail "--user 4242 runs as uid $user"
predict
stop "$NAME"
echo "container test passed"
