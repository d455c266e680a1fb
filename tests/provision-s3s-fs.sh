#!/usr/bin/env bash
# Build the patched s3s-fs 0.14.1 (the second real S3 server of the suite) into
# $1 (default target/s3s-fs): $1/bin/s3s-fs. Does nothing when it exists.
# The build recipe and the patch live in ../shared/s3s-fs/ beside the
# repository (CI provides ../shared next to the clone; COLTEC_SHARED_DIR overrides
# that location, e.g. for a git worktree); see its build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-target/s3s-fs}
if [ -x "$dest/bin/s3s-fs" ]; then exit 0; fi
shared=${COLTEC_SHARED_DIR:-../shared}
build=$shared/s3s-fs/build.sh
if [ ! -f "$build" ]; then
  echo "provision-s3s-fs: $build is missing (from $(pwd))." >&2
  echo "  The patched s3s-fs build lives in ../shared/s3s-fs/ beside the repository" >&2
  echo "  (CI checks it out next to the clone); set COLTEC_SHARED_DIR to use another" >&2
  echo "  location. Without it the S3 tests cannot run against the second server." >&2
  exit 1
fi
echo "provision-s3s-fs: building patched s3s-fs 0.14.1 into $dest (once; a few minutes)" >&2
bash "$build" "$dest"
