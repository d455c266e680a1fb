#!/usr/bin/env bash
# End-to-end comparison: `coltecd sync --once` vs `rclone sync` against the
# same local moto_server, on the same generated tree, with the same
# transfers/checkers. Requests are counted at the server (moto's access log,
# classified by benches/s3count.py). See benches/README.md for the method.
#
#   benches/e2e.sh [--small] [--rps N] [--bwlimit] [--server moto|s3s]
#
#   --server   which S3 server (default moto). s3s: the patched s3s-fs the
#              tests use (target/s3s-fs, built by tests/provision-s3s-fs.sh;
#              verifies SigV4, lists no ETags); it has no access log, so
#              the request columns read n/a. Run once per server for the
#              side-by-side table.
#   --small    1k files + 3 x 8 MiB (quick check) instead of 10k + 3 x 64 MiB
#   --rps N    coltecd's daemon.max_requests_per_second (default: the spec
#              default, 1000/s; rclone has no request limit by default)
#   --bwlimit  also time a 64 MiB upload with `bwlimit: 10M` (coltecd and
#              rclone --bwlimit 10M; about 7 s each)
#
# Needs: python3 (moto is installed into target/moto-venv), rclone (Debian:
# apt-get install rclone), GNU time (/usr/bin/time; apt-get install time).
# Prints a markdown table on stdout; progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

files=10000; big=3; big_mib=64; rps=""; bw=0; server=moto
while [ $# -gt 0 ]; do
  case "$1" in
    --small) files=1000; big_mib=8 ;;
    --rps) rps=$2; shift ;;
    --bwlimit) bw=1 ;;
    --server) server=$2; shift ;;
    *) echo "usage: benches/e2e.sh [--small] [--rps N] [--bwlimit] [--server moto|s3s]" >&2; exit 2 ;;
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

work=$(mktemp -d /tmp/coltecd-e2e.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$work/moto.log
ak=bench; sk=bench-secret
if [ "$server" = s3s ]; then
  tests/provision-s3s-fs.sh target/s3s-fs >&2
  ak=AKIATESTCOLTECDKEY01; sk=coltecd-bench-secret-value
  mkdir -p "$work/s3s-data"
  target/s3s-fs/bin/s3s-fs --host 127.0.0.1 --port "$port" --access-key "$ak" --secret-key "$sk" \
    "$work/s3s-data" >"$log" 2>&1 &
else
  tests/provision-moto.sh target/moto-venv
  target/moto-venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
fi
moto=$!
trap 'kill $moto 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
endpoint=http://127.0.0.1:$port
mkbucket() { rclone mkdir "moto:$1"; }

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

export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other RCLONE_CONFIG_MOTO_ENDPOINT=$endpoint \
  RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=$ak RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=$sk \
  RCLONE_CONFIG_MOTO_REGION=us-east-1 RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE=true
export RCLONE_CONFIG=/dev/null
rflags=(--transfers "$transfers" --checkers "$checkers" --links
        --exclude 'node_modules/**' --exclude 'target/**' --exclude '.git/**')

# spec PATH BUCKET ROOT [EXTRA-TARGET-YAML]: a one-target push-only spec.
spec() {
  cat >"$1" <<YAML
name: bench
metadata: {org: bench, project: e2e, environment: dev}
persistence:
  enabled: true
  mode: replicated
  default_remote: moto
  defaults: {transfers: $transfers, checkers: $checkers}
  remotes:
    moto:
      type: s3
      bucket: $2
      options: {provider: Other, endpoint: "$endpoint", region: us-east-1,
                access_key_id: $ak, secret_access_key: $sk}
  sync:
    - name: tree
      path: $3
      remote_path: "{org}/{project}/{env}/tree"
      direction: push-only
      interval: 60
      exclude: ["node_modules/**", "target/**", ".git/**"]
${4:-}
  daemon:
    log_dir: $work/logs
${rps:+    max_requests_per_second: $rps}
YAML
}
spec "$work/spec.yaml" coltecd-bench "$src"
mkbucket coltecd-bench; mkbucket rclone-bench
export COLTEC_STATE_DIR=$work/state

# run CMD... : sets RES to "wall_s rss_mib LIST GET HEAD PUT DELETE MPU OTHER"
# (not a subshell, so a failing command stops the script).
run() {
  local before; before=$(wc -l <"$log")
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$work/out" 2>"$work/err" \
    || { echo "FAILED: $*" >&2; cat "$work/out" "$work/err" >&2; exit 1; }
  sleep 0.5 # let moto flush its last log lines
  local counts="n/a n/a n/a n/a n/a n/a n/a"
  [ "$server" = s3s ] || counts=$(tail -n +"$((before + 1))" "$log" | python3 "$count")
  local wall rss; read -r wall rss <"$work/time"
  RES="$wall $(awk -v k="$rss" 'BEGIN{printf "%.0f", k/1024}') $counts"
}

# step LABEL TOOL CMD... : run and print one table row.
step() {
  local label=$1 tool=$2; shift 2
  run "$@"
  # shellcheck disable=SC2086
  set -- $RES
  printf '| %s | %s | %s s | %s MiB | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$tool" "$@"
  printf '%s: %s %s s\n' "$label" "$tool" "$1" >&2
}

c=("$bin" --config "$work/spec.yaml")
r=(rclone sync)
change() { python3 -c "import sys; open(sys.argv[1],'ab').write(b'changed')" "$src/d07/s03/f00357.txt"; }

echo "| step | tool | wall | peak RSS | LIST | GET | HEAD | PUT | DELETE | multipart | other |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
step "initial push" coltecd "${c[@]}" sync --once
step "initial push" rclone "${r[@]}" "$src" moto:rclone-bench/tree "${rflags[@]}"
step "no-op pass" coltecd "${c[@]}" sync --once
step "no-op pass" rclone "${r[@]}" "$src" moto:rclone-bench/tree "${rflags[@]}"
change
step "one file changed" coltecd "${c[@]}" sync --once
step "one file changed" rclone "${r[@]}" "$src" moto:rclone-bench/tree "${rflags[@]}"
step "restore (empty dir)" coltecd "${c[@]}" restore --to "$work/restore-coltecd"
step "restore (empty dir)" rclone "${r[@]}" moto:rclone-bench/tree "$work/restore-rclone" "${rflags[@]}"

# Both restores must equal the source (minus the excluded dirs): same
# files, same bytes, same mtimes (to the second).
python3 - "$src" "$work/restore-coltecd" "$work/restore-rclone" <<'PY' >&2
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
  mkdir -p "$work/bw"
  head -c $((64 << 20)) /dev/urandom >"$work/bw/one.bin"
  spec "$work/spec-bw.yaml" coltecd-bench "$work/bw" "      bwlimit: 10M"
  sed -i 's|name: tree|name: bw|; s|/tree"|/bw"|' "$work/spec-bw.yaml"
  COLTEC_STATE_DIR=$work/state-bw run "$bin" --config "$work/spec-bw.yaml" sync --once
  echo "$RES" >"$work/bw-c"
  run rclone copy "$work/bw" moto:rclone-bench/bw --bwlimit 10M --transfers "$transfers"
  echo "$RES" >"$work/bw-r"
  echo
  echo "| bwlimit 10M, one 64 MiB file | wall | effective rate | vs 10 MiB/s |"
  echo "|---|---|---|---|"
  for t in coltecd rclone; do
    read -r wall _ <"$work/bw-${t:0:1}"
    awk -v t="$t" -v w="$wall" 'BEGIN{r=64/w; printf "| %s | %s s | %.2f MiB/s | %+.1f%% |\n", t, w, r, (r/10-1)*100}'
  done
fi
