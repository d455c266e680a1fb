#!/usr/bin/env bash
# Crypt throughput: push and restore of the same generated tree, plain S3
# vs an rclone crypt remote wrapping the same bucket (standard names,
# directory names encrypted, the same password and salt for both tools),
# for coltecd and for stock rclone, against one local S3 server. Answers
# #11 item 5: crypt push and restore at >= 80% of the plain path; peak RSS
# bounded by transfers x chunk buffers, not by file size.
#
#   benches/crypt.sh [--small] [--big-mib N] [--server moto|s3s]
#
#   --small    1k files + 3 x 8 MiB instead of 10k + 3 x 64 MiB
#   --big-mib  the size of the 3 big files (after --small: peak RSS
#              against file size on the same small tree)
#   --server   moto (default) or s3s (the patched s3s-fs the tests use)
#
# A separate script (not a mode of benches/e2e.sh) so that both evolve
# independently; the server start, the tree and the timing follow e2e.sh.
# Needs python3, rclone, GNU time. Prints a markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

files=10000; big=3; big_mib=64; server=moto
while [ $# -gt 0 ]; do
  case "$1" in
    --small) files=1000; big_mib=8 ;;
    --big-mib) big_mib=$2; shift ;;
    --server) server=$2; shift ;;
    *) echo "usage: benches/crypt.sh [--small] [--big-mib N] [--server moto|s3s]" >&2; exit 2 ;;
  esac
  shift
done
transfers=4; checkers=8

command -v rclone >/dev/null || { echo "rclone is not installed (apt-get install rclone)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "GNU time is not installed (apt-get install time)" >&2; exit 2; }
unset AWS_CA_BUNDLE

bin=${COLTECD_BIN:-}
if [ -z "$bin" ]; then cargo build --release --quiet; bin=$PWD/target/release/coltecd; fi

work=$(mktemp -d /tmp/coltecd-crypt.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$work/server.log
ak=bench; sk=bench-secret
if [ "$server" = s3s ]; then
  tests/provision-s3s-fs.sh target/s3s-fs >&2
  ak=AKIATESTCOLTECDKEY01; sk=coltecd-bench-secret-value
  mkdir -p "$work/s3s-data"
  target/s3s-fs/bin/s3s-fs --host 127.0.0.1 --port "$port" --access-key "$ak" --secret-key "$sk" \
    "$work/s3s-data" >"$log" 2>&1 &
else
  tests/provision-moto.sh target/moto-venv >&2
  target/moto-venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
fi
srv=$!
trap 'kill $srv 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
endpoint=http://127.0.0.1:$port

# --- the tree (the same generator as e2e.sh) --------------------------------
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
PY

# The password and salt, obscured the way rclone and coltecd read them.
pw=$(rclone obscure 'bench-crypt-password')
salt=$(rclone obscure 'bench-crypt-salt')
export BENCH_CRYPT_PW=$pw BENCH_CRYPT_SALT=$salt
export RCLONE_CONFIG=/dev/null
export RCLONE_CONFIG_S3_TYPE=s3 RCLONE_CONFIG_S3_PROVIDER=Other RCLONE_CONFIG_S3_ENDPOINT=$endpoint \
  RCLONE_CONFIG_S3_ACCESS_KEY_ID=$ak RCLONE_CONFIG_S3_SECRET_ACCESS_KEY=$sk \
  RCLONE_CONFIG_S3_REGION=us-east-1 RCLONE_CONFIG_S3_FORCE_PATH_STYLE=true
export RCLONE_CONFIG_ENC_TYPE=crypt RCLONE_CONFIG_ENC_REMOTE=s3:rclone-crypt/enc \
  RCLONE_CONFIG_ENC_PASSWORD=$pw RCLONE_CONFIG_ENC_PASSWORD2=$salt \
  RCLONE_CONFIG_ENC_FILENAME_ENCRYPTION=standard RCLONE_CONFIG_ENC_DIRECTORY_NAME_ENCRYPTION=true
rflags=(--transfers "$transfers" --checkers "$checkers")

# spec PATH BUCKET REMOTE: a one-target push-only spec on `s3` (plain) or
# `enc` (crypt wrapping `s3` at <bucket>/enc).
spec() {
  cat >"$1" <<YAML
name: bench
metadata: {org: bench, project: crypt, environment: dev}
persistence:
  enabled: true
  mode: replicated
  defaults: {transfers: $transfers, checkers: $checkers}
  remotes:
    s3:
      type: s3
      bucket: $2
      options: {provider: Other, endpoint: "$endpoint", region: us-east-1,
                access_key_id: $ak, secret_access_key: $sk}
    enc:
      type: crypt
      wrap_remote: s3
      wrap_path: enc
      crypt:
        password_env: BENCH_CRYPT_PW
        password2_env: BENCH_CRYPT_SALT
        filename_encryption: standard
        directory_name_encryption: true
  sync:
    - name: tree
      path: $src
      remote: $3
      remote_path: tree
      direction: push-only
      interval: 60
  daemon:
    log_dir: $work/logs
YAML
}
for b in coltecd-plain coltecd-crypt rclone-plain rclone-crypt; do rclone mkdir "s3:$b"; done
spec "$work/plain.yaml" coltecd-plain s3
spec "$work/crypt.yaml" coltecd-crypt enc

# run CMD... : sets RES to "wall_s rss_mib".
run() {
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$work/out" 2>"$work/err" \
    || { echo "FAILED: $*" >&2; cat "$work/out" "$work/err" >&2; exit 1; }
  local wall rss; read -r wall rss <"$work/time"
  RES="$wall $(awk -v k="$rss" 'BEGIN{printf "%.0f", k/1024}')"
}

mib=$(du -sm --apparent-size "$src" | cut -f1)
# row STEP TOOL PLAIN-CMD -- CRYPT-CMD: time both, print one row.
row() {
  local step=$1 tool=$2; shift 2
  local plain=() crypt=()
  while [ "$1" != -- ]; do plain+=("$1"); shift; done; shift
  crypt=("$@")
  run "${plain[@]}"; read -r pw_ pr <<<"$RES"
  run "${crypt[@]}"; read -r cw cr <<<"$RES"
  awk -v s="$step" -v t="$tool" -v pw="$pw_" -v pr="$pr" -v cw="$cw" -v cr="$cr" -v m="$mib" 'BEGIN{
    printf "| %s | %s | %s s (%.1f MiB/s) | %s MiB | %s s (%.1f MiB/s) | %s MiB | %.0f%% |\n",
      s, t, pw, m/pw, pr, cw, m/cw, cr, 100*pw/cw }'
  echo "$step $tool: plain $pw_ s, crypt $cw s" >&2
}

export COLTEC_STATE_DIR=$work/state
cp=("$bin" --config "$work/plain.yaml")
cc=("$bin" --config "$work/crypt.yaml")
echo "tree: $files files + $big x $big_mib MiB ($mib MiB), server $server, transfers $transfers"
echo
echo "| step | tool | plain S3 | peak RSS | crypt | peak RSS | crypt throughput / plain |"
echo "|---|---|---|---|---|---|---|"
row "initial push" coltecd "${cp[@]}" sync --once -- \
  env COLTEC_STATE_DIR="$work/state-crypt" "${cc[@]}" sync --once
row "initial push" rclone rclone sync "$src" s3:rclone-plain/tree "${rflags[@]}" -- \
  rclone sync "$src" enc:tree "${rflags[@]}"
row "restore (empty dir)" coltecd "${cp[@]}" restore --to "$work/r-cp" -- \
  env COLTEC_STATE_DIR="$work/state-crypt" "${cc[@]}" restore --to "$work/r-cc"
row "restore (empty dir)" rclone rclone sync s3:rclone-plain/tree "$work/r-rp" "${rflags[@]}" -- \
  rclone sync enc:tree "$work/r-rc" "${rflags[@]}"

# Every restore equals the source; the crypt bucket shows no plaintext
# name; each tool reads the other's crypt tree.
python3 - "$src" "$work"/r-cp "$work"/r-cc "$work"/r-rp "$work"/r-rc <<'PY' >&2
import hashlib, os, sys
def tree(root):
    out = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x != ".coltec"]
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.md5(fh.read()).hexdigest()
    return out
src = tree(sys.argv[1])
for r in sys.argv[2:]:
    got = tree(r)
    bad = [k for k in set(src) | set(got) if src.get(k) != got.get(k)]
    print(f"{r}: {len(got)} files, {'identical to the source' if not bad else f'{len(bad)} DIFFER'}")
    if bad: sys.exit(1)
PY
if rclone lsf -R s3:coltecd-crypt | grep -Eq 'f0[0-9]{4}\.txt|big[0-9]\.bin|/tree/'; then
  echo "PLAINTEXT NAME in the coltecd crypt bucket" >&2; exit 1
fi
RCLONE_CONFIG_ENC_REMOTE=s3:coltecd-crypt/enc rclone cryptcheck "$src" enc:tree "${rflags[@]}" >&2 \
  && echo "rclone cryptcheck of coltecd's crypt tree: OK" >&2
