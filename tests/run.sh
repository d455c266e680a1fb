#!/usr/bin/env bash
# The whole test suite, from a fresh clone: provisions and starts a real S3
# server (moto_server), runs every test against it, stops it afterwards.
#   tests/run.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/moto-venv
tests/provision-moto.sh "$venv"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >target/moto-server.log 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true; wait $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done
export COLTEC_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
cargo test --all-targets "$@"
