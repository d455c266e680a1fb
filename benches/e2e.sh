#!/usr/bin/env bash
# End-to-end comparison: `coltecd sync --once` vs `rclone sync` against the
# same local S3 server (moto, s3s-fs, or both one after the other in one
# invocation), on the same generated tree, with the same transfers/checkers.
# Requests are counted at the server where it logs them (moto's access log,
# classified by benches/s3count.py). See benches/README.md for the method.
#
#   benches/e2e.sh [--small] [--rps N] [--bwlimit] [--server moto|s3s|both]
#
#   --server   which S3 server (default moto). s3s: the patched s3s-fs the
#              tests use (target/s3s-fs, built by tests/provision-s3s-fs.sh;
#              verifies SigV4, lists no ETags); it has no access log, so
#              its request columns read n/a. both: moto, then s3s-fs, on
#              the same tree, then one summary table of the ratios.
#   --small    1k files + 3 x 8 MiB (quick check) instead of 10k + 3 x 64 MiB
#   --rps N    coltecd's daemon.max_requests_per_second (default: the spec
#              default, 1000/s; rclone has no request limit by default)
#   --bwlimit  also time a 64 MiB upload with `bwlimit: 10M` (coltecd and
#              rclone --bwlimit 10M; about 7 s each)
#
# Per server: initial push, no-op pass, one file changed, restore into an
# empty directory (each coltecd then rclone), and the time-to-ready of
# `coltecd start` (a bidirectional target on an empty directory whose remote
# holds the pushed tree: start returns once the lease is held and the first
# restore is done). Peak RSS is GNU time's, process start to exit.
#
# Env: COLTECD_BIN (the binary to measure; default: build target/release),
# E2E_TMPDIR (the work directory's parent, default /tmp).
#
# Needs: python3 (moto is installed into target/moto-venv), rclone (Debian:
# apt-get install rclone), GNU time (/usr/bin/time; apt-get install time).
# Prints markdown tables on stdout; progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

files=10000; big=3; big_mib=64; rps=""; bw=0; servers=moto
while [ $# -gt 0 ]; do
  case "$1" in
    --small) files=1000; big_mib=8 ;;
    --rps) rps=$2; shift ;;
    --bwlimit) bw=1 ;;
    --server) case "$2" in both) servers="moto s3s" ;; moto|s3s) servers=$2 ;;
                *) echo "--server moto|s3s|both" >&2; exit 2 ;; esac; shift ;;
    *) echo "usage: benches/e2e.sh [--small] [--rps N] [--bwlimit] [--server moto|s3s|both]" >&2; exit 2 ;;
  esac
  shift
done
transfers=4; checkers=8

command -v rclone >/dev/null || { echo "rclone is not installed (apt-get install rclone)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "GNU time is not installed (apt-get install time)" >&2; exit 2; }
# rclone refuses to start when AWS_CA_BUNDLE is set (LoadCustomCABundleError
# with its own HTTP transport); the server is plain http anyway.
unset AWS_CA_BUNDLE

# COLTECD_BIN: use that binary instead of building target/release/coltecd.
bin=${COLTECD_BIN:-}
if [ -z "$bin" ]; then cargo build --release --quiet; bin=$PWD/target/release/coltecd; fi
count=$PWD/benches/s3count.py
for s in $servers; do
  case $s in
    s3s) tests/provision-s3s-fs.sh target/s3s-fs >&2 ;;
    moto) tests/provision-moto.sh target/moto-venv >&2 ;;
  esac
done

# E2E_TMPDIR: where the trees, restores and the servers' data live (default
# /tmp; the issue #12 table used a tmpfs, e.g. E2E_TMPDIR=/dev/shm).
work=$(mktemp -d "${E2E_TMPDIR:-/tmp}/coltecd-e2e.XXXXXX")
srv=""; sw=""
cleanup() {
  if [ -n "$sw" ] && [ -f "$sw/ready-spec.yaml" ]; then
    COLTEC_STATE_DIR=$sw/state-ready "$bin" --config "$sw/ready-spec.yaml" stop >/dev/null 2>&1 || true
  fi
  [ -z "$srv" ] || kill "$srv" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- the tree -------------------------------------------------------------
src=$work/src
echo "generating $files files + $big x $big_mib MiB in $src" >&2
python3 - "$src" "$files" "$big" "$big_mib" <<'PY'
import os, random, sys
root, n, big, big_mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(42)
for i in range(n):
    d = os.path.join(root, f"d{i % 50:02d}", f"s{(i // 50) % 20:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.txt"), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 16 * 1024)))
for i in range(big):
    with open(os.path.join(root, f"big{i}.bin"), "wb") as f:
        for _ in range(big_mib):
            f.write(rng.randbytes(1 << 20))
for ex in ("node_modules/pkg", "target/debug", ".git/objects"):
    d = os.path.join(root, ex); os.makedirs(d, exist_ok=True)
    for i in range(200):
        with open(os.path.join(d, f"x{i}"), "wb") as f: f.write(b"x" * 4096)
PY


rflags=(--transfers "$transfers" --checkers "$checkers" --links
        --exclude 'node_modules/**' --exclude 'target/**' --exclude '.git/**')

# spec PATH BUCKET ROOT [EXTRA-TARGET-YAML] [DIRECTION]: a one-target spec
# (push-only unless said).
spec() {
  cat >"$1" <<YAML
name: bench
metadata: {org: bench, project: e2e, environment: dev}
persistence:
  enabled: true
  mode: replicated
  default_remote: s3
  defaults: {transfers: $transfers, checkers: $checkers}
  remotes:
    s3:
      type: s3
      bucket: $2
      options: {provider: Other, endpoint: "$endpoint", region: us-east-1,
                access_key_id: $ak, secret_access_key: $sk}
  sync:
    - name: tree
      path: $3
      remote_path: "{org}/{project}/{env}/tree"
      direction: ${5:-push-only}
      interval: 60
      exclude: ["node_modules/**", "target/**", ".git/**"]
${4:-}
  daemon:
    log_dir: $sw/logs
${rps:+    max_requests_per_second: $rps}
YAML
}

# run CMD... : sets RES to "wall_s rss_mib LIST GET HEAD PUT DELETE MPU OTHER"
# (not a subshell, so a failing command stops the script).
run() {
  local before; before=$(wc -l <"$log")
  /usr/bin/time -f '%e %M' -o "$sw/time" "$@" >"$sw/out" 2>"$sw/err" \
    || { echo "FAILED: $*" >&2; cat "$sw/out" "$sw/err" >&2; exit 1; }
  sleep 0.5 # let moto flush its last log lines
  local counts="n/a n/a n/a n/a n/a n/a n/a"
  if [ "$server" != s3s ]; then
    tail -n +"$((before + 1))" "$log" >"$sw/slice.log"
    counts=$(python3 "$count" <"$sw/slice.log")
  fi
  local wall rss; read -r wall rss <"$sw/time"
  RES="$wall $(awk -v k="$rss" 'BEGIN{printf "%.0f", k/1024}') $counts"
}

# step KEY LABEL TOOL CMD... : run and print one table row; the result is
# kept in $sw/res-KEY-TOOL for the summary.
step() {
  local key=$1 label=$2 tool=$3; shift 3
  run "$@"
  echo "$RES" >"$sw/res-$key-$tool"
  # shellcheck disable=SC2086
  set -- $RES
  printf '| %s | %s | %s | %s s | %s MiB | %s | %s | %s | %s | %s | %s | %s |\n' "$server" "$label" "$tool" "$@"
  printf '%s %s: %s %s s\n' "$server" "$label" "$tool" "$1" >&2
}

change() { python3 -c "import sys; open(sys.argv[1],'ab').write(b'changed')" "$src/d07/s03/f00357.txt"; }

# bench SERVER: start the server, run every scenario against it, stop it.
bench() {
  server=$1; sw=$work/$server; mkdir -p "$sw"
  log=$sw/server.log
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  if [ "$server" = s3s ]; then
    ak=AKIATESTCOLTECDKEY01; sk=coltecd-bench-secret-value
    mkdir -p "$sw/s3s-data"
    target/s3s-fs/bin/s3s-fs --host 127.0.0.1 --port "$port" --access-key "$ak" --secret-key "$sk" \
      "$sw/s3s-data" >"$log" 2>&1 &
  else
    ak=bench; sk=bench-secret
    target/moto-venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
  fi
  srv=$!
  for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  endpoint=http://127.0.0.1:$port
  export RCLONE_CONFIG_S3_TYPE=s3 RCLONE_CONFIG_S3_PROVIDER=Other RCLONE_CONFIG_S3_ENDPOINT=$endpoint \
    RCLONE_CONFIG_S3_ACCESS_KEY_ID=$ak RCLONE_CONFIG_S3_SECRET_ACCESS_KEY=$sk \
    RCLONE_CONFIG_S3_REGION=us-east-1 RCLONE_CONFIG_S3_FORCE_PATH_STYLE=true
  export RCLONE_CONFIG=/dev/null
  rclone mkdir s3:coltecd-bench; rclone mkdir s3:rclone-bench
  spec "$sw/spec.yaml" coltecd-bench "$src"
  export COLTEC_STATE_DIR=$sw/state
  echo "$server: load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  echo "$(date -u +%H:%M:%S) $server start, load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/loads"

  local c=("$bin" --config "$sw/spec.yaml") r=(rclone sync)
  echo
  echo "### $server (load average at start: $(cut -d' ' -f1-3 /proc/loadavg))"
  echo
  echo "| server | step | tool | wall | peak RSS | LIST | GET | HEAD | PUT | DELETE | multipart | other |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  step push "initial push" coltecd "${c[@]}" sync --once
  step push "initial push" rclone "${r[@]}" "$src" s3:rclone-bench/tree "${rflags[@]}"
  step noop "no-op pass" coltecd "${c[@]}" sync --once
  if [ "$server" != s3s ]; then # what a one-shot no-op costs, request by request
    echo "$server: the no-op pass's requests (coltecd):" >&2
    python3 "$count" --by-key <"$sw/slice.log" 2>&1 >/dev/null | sed 's/^/    /' >&2
  fi
  step noop "no-op pass" rclone "${r[@]}" "$src" s3:rclone-bench/tree "${rflags[@]}"
  change
  step one "one file changed" coltecd "${c[@]}" sync --once
  step one "one file changed" rclone "${r[@]}" "$src" s3:rclone-bench/tree "${rflags[@]}"
  step restore "restore (empty dir)" coltecd "${c[@]}" restore --to "$sw/restore-coltecd"
  step restore "restore (empty dir)" rclone "${r[@]}" s3:rclone-bench/tree "$sw/restore-rclone" "${rflags[@]}"

  # Time-to-ready: a new host (own state dir) starts a bidirectional target
  # on an empty directory whose remote holds the tree; `start` returns once
  # the lease is held and the first restore is done.
  mkdir -p "$sw/ready"
  spec "$sw/ready-spec.yaml" coltecd-bench "$sw/ready" "" bidirectional
  COLTEC_STATE_DIR=$sw/state-ready step ready "start until ready (empty dir)" coltecd \
    "$bin" --config "$sw/ready-spec.yaml" start
  COLTEC_STATE_DIR=$sw/state-ready "$bin" --config "$sw/ready-spec.yaml" stop >/dev/null

# Both restores must equal the source (minus the excluded dirs): same
# files, same bytes, same mtimes (to the second).
python3 - "$src" "$sw/restore-coltecd" "$sw/restore-rclone" "$sw/ready" <<'PY' >&2
import hashlib, os, sys
def tree(root, skip=("node_modules", "target", ".git", ".coltec")):
    out = {}
    for d, dirs, files in os.walk(root):
        if d == root:
            dirs[:] = [x for x in dirs if x not in skip]
        for f in files:
            p = os.path.join(d, f)
            st = os.lstat(p)
            with open(p, "rb") as fh:
                h = hashlib.md5(fh.read()).hexdigest()
            out[os.path.relpath(p, root)] = (st.st_size, int(st.st_mtime), h)
    return out
src = tree(sys.argv[1])
for r in sys.argv[2:]:
    got = tree(r)
    bad = [k for k in set(src) | set(got) if src.get(k) != got.get(k)]
    print(f"{r}: {len(got)} files, {'identical to the source' if not bad else f'{len(bad)} DIFFER, e.g. {sorted(bad)[:3]}'}")
PY


  if [ "$bw" = 1 ]; then
    # bwlimit 10M = 10 MiB/s: one 64 MiB file should take ~6.4 s.
    mkdir -p "$sw/bw"
    head -c $((64 << 20)) /dev/urandom >"$sw/bw/one.bin"
    spec "$sw/spec-bw.yaml" coltecd-bench "$sw/bw" "      bwlimit: 10M"
    sed -i 's|name: tree|name: bw|; s|/tree"|/bw"|' "$sw/spec-bw.yaml"
    COLTEC_STATE_DIR=$sw/state-bw run "$bin" --config "$sw/spec-bw.yaml" sync --once
    echo "$RES" >"$sw/bw-coltecd"
    run rclone copy "$sw/bw" s3:rclone-bench/bw --bwlimit 10M --transfers "$transfers"
    echo "$RES" >"$sw/bw-rclone"
    echo
    echo "| server | bwlimit 10M, one 64 MiB file | wall | effective rate | vs 10 MiB/s |"
    echo "|---|---|---|---|---|"
    for t in coltecd rclone; do
      read -r wall _ <"$sw/bw-$t"
      awk -v s="$server" -v t="$t" -v w="$wall" 'BEGIN{r=64/w; printf "| %s | %s | %s s | %.2f MiB/s | %+.1f%% |\n", s, t, w, r, (r/10-1)*100}'
    done
  fi
  kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; srv=""
  echo "$(date -u +%H:%M:%S) $server end, load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/loads"
}

for s in $servers; do bench "$s"; done

# The ratios coltecd/rclone per server, from the rows above.
echo
echo "### Summary: coltecd / rclone"
echo
echo "| scenario | server | rclone | coltecd | ratio | coltecd peak RSS |"
echo "|---|---|---|---|---|---|"
for key in push noop one restore; do
  for s in $servers; do
    read -r rw _ <"$work/$s/res-$key-rclone"
    read -r cw crss _ <"$work/$s/res-$key-coltecd"
    awk -v k="$key" -v s="$s" -v r="$rw" -v c="$cw" -v m="$crss" \
      'BEGIN{printf "| %s | %s | %s s | %s s | %.3fx | %s MiB |\n", k, s, r, c, (r > 0 ? c / r : 0), m}'
  done
done
for s in $servers; do
  read -r cw crss _ <"$work/$s/res-ready-coltecd"
  echo "| start until ready | $s | | $cw s | | $crss MiB (the foreground process) |"
done
echo
echo "Load averages:"; sed 's/^/    /' "$work/loads"
