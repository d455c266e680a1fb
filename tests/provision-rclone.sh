#!/usr/bin/env bash
# Installs stock rclone (Debian's package) for the crypt interoperability
# tests when it is missing. Idempotent; needs root (CI and dev machines run
# as root).
#   tests/provision-rclone.sh
set -euo pipefail
if command -v rclone >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq rclone >/dev/null
rclone version | sed -n 1p
