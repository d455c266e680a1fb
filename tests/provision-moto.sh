#!/usr/bin/env bash
# Install moto[server] (a real S3-protocol server) into a venv: $1 (default target/moto-venv).
set -euo pipefail
venv=${1:-target/moto-venv}
if [ -x "$venv/bin/moto_server" ]; then exit 0; fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6'
