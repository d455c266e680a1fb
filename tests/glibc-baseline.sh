#!/usr/bin/env bash
# Build the release coltecd for glibc 2.28 (Debian 10+, Ubuntu 20.04+, RHEL 8+)
# and check it: the highest GLIBC_ symbol version it imports must be <= 2.28.
#   tests/glibc-baseline.sh [TRIPLE...]     (default: x86_64-unknown-linux-gnu)
# e.g. tests/glibc-baseline.sh x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu
# (a second triple needs its std: `rustup target add aarch64-unknown-linux-gnu`).
#
# cargo-zigbuild links against Zig's glibc 2.28 stubs; both come from PyPI
# (the `ziglang` and `cargo-zigbuild` wheels) into target/zig-venv, so a fresh
# clone provisions them itself. The artifact is the normal release profile:
# target/TRIPLE/release/coltecd.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=2.28
venv=target/zig-venv
if [ ! -x "$venv/bin/cargo-zigbuild" ] || [ ! -x "$venv/bin/python-zig" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'ziglang==0.15.2' 'cargo-zigbuild==0.24.*'
fi
# cargo-zigbuild runs `python3 -m ziglang` when no `zig` is on PATH.
export PATH="$PWD/$venv/bin:$PATH"

[ $# -gt 0 ] || set -- x86_64-unknown-linux-gnu
status=0
for triple in "$@"; do
  cargo zigbuild --release --locked --bin coltecd --target "$triple.$baseline"
  bin=${CARGO_TARGET_DIR:-target}/$triple/release/coltecd
  # Versioned imports, e.g. "GLIBC_2.17"; readelf reads any architecture.
  need=$(readelf --dyn-syms --wide "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' |
    sed 's/^GLIBC_//' | sort -uV | tail -n 1)
  [ -n "$need" ] || { echo "$bin: no GLIBC_ symbol versions found (not a glibc binary?)" >&2; exit 1; }
  newest=$(printf '%s\n%s\n' "$need" "$baseline" | sort -V | tail -n 1)
  size=$(stat -c %s "$bin")
  if [ "$newest" = "$baseline" ]; then
    echo "ok: $bin ($size bytes) needs glibc >= $need (baseline $baseline)"
  else
    echo "FAIL: $bin needs glibc $need, newer than the baseline $baseline:" >&2
    readelf --dyn-syms --wide "$bin" | grep -F "GLIBC_$need" >&2 || true
    status=1
  fi
done
exit $status
