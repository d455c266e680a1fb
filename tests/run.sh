#!/usr/bin/env bash
# The whole test suite, from a fresh clone: provisions and starts two real S3
# servers, moto_server and the patched s3s-fs (every S3 test runs against
# both), runs the tests, stops both afterwards.
#   tests/run.sh [extra cargo test args]
# Needs ../shared beside the repository (the s3s-fs patch; COLTEC_SHARED_DIR
# overrides) and systemd-analyze (package systemd, installed when missing
# and run as root with apt-get) for the unit checks.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

# systemd-analyze checks the shipped units (tests/it/daemon.rs); provisioned
# like rclone: Debian's package, when missing and apt-get can install it.
if ! command -v systemd-analyze >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tests/run.sh: installing systemd (for systemd-analyze)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
  fi
  command -v systemd-analyze >/dev/null || {
    echo "tests/run.sh: systemd-analyze is missing and could not be installed" >&2
    echo "  (apt-get install systemd as root); the systemd unit test fails without it." >&2
  }
fi

venv=target/moto-venv
s3s=target/s3s-fs
tests/provision-moto.sh "$venv"
tests/provision-s3s-fs.sh "$s3s"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # port name pid
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  echo "tests/run.sh: $2 did not start on port $1; see target/$2-server.log" >&2
  exit 1
}

pids=()
data=target/s3s-fs-data/run-$$
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$data"
  echo "tests/run.sh: $(($(date +%s) - start)) s" >&2
}
trap cleanup EXIT

moto_port=$(free_port)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >target/moto-server.log 2>&1 &
pids+=($!)
moto_pid=$!

mkdir -p "$data"
s3s_port=$(free_port)
"$s3s/bin/s3s-fs" --host 127.0.0.1 --port "$s3s_port" \
  --access-key AKIATESTCOLTECDKEY01 --secret-key coltecd-test-secret-value-never-logged \
  "$data" >target/s3s-server.log 2>&1 &
pids+=($!)
s3s_pid=$!

wait_port "$moto_port" moto "$moto_pid"
wait_port "$s3s_port" s3s "$s3s_pid"
# The credentials above are tests/it/support/s3.rs's ACCESS_KEY / SECRET_KEY.
export COLTEC_TEST_S3_ENDPOINT="http://127.0.0.1:$moto_port"
export COLTEC_TEST_S3S_ENDPOINT="http://127.0.0.1:$s3s_port"
# Every target, unless the arguments pick targets themselves (--test it, --lib...).
targets=(--all-targets)
for a in "$@"; do
  case $a in --lib | --bins | --bin | --test | --tests | --bench | --benches | --doc | --example*) targets=() ;; esac
done
cargo test --no-fail-fast "${targets[@]}" "$@"
