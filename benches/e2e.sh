#!/usr/bin/env bash
# End-to-end comparison: `coltecd sync --once` vs `rclone sync` against the
# same local moto_server, on the same generated tree, with the same
# transfers/checkers. Requests are counted at the server (moto's access log).
#
#   benches/e2e.sh [--small]        # --small: 1k files, 3x8 MiB (quick check)
#
# Needs: python3 (for moto, installed into target/moto-venv), rclone
# (Debian: apt-get install rclone), GNU time (/usr/bin/time; apt-get install time).
# Prints a markdown table; see benches/README.md for the method and results.
set -euo pipefail
cd "$(dirname "$0")/.."

files=10000; big=3; big_mib=64
if [ "${1:-}" = "--small" ]; then files=1000; big=3; big_mib=8; fi
transfers=4; checkers=8

command -v rclone >/dev/null || { echo "rclone is not installed (apt-get install rclone)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "GNU time is not installed (apt-get install time)" >&2; exit 2; }

cargo build --release --quiet
bin=$PWD/target/release/coltecd
tests/provision-moto.sh target/moto-venv

work=$(mktemp -d /tmp/coltecd-e2e.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$work/moto.log
target/moto-venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
endpoint=http://127.0.0.1:$port
mkbucket() { curl -s -X PUT "$endpoint/$1" -o /dev/null; }

# --- the tree -------------------------------------------------------------
src=$work/src
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

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other RCLONE_CONFIG_MOTO_ENDPOINT=$endpoint \
  RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=bench RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=bench-secret \
  RCLONE_CONFIG_MOTO_REGION=us-east-1 RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE=true
excl=(--exclude 'node_modules/**' --exclude 'target/**' --exclude '.git/**')

cat >"$work/spec.yaml" <<YAML
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
      bucket: coltecd-bench
      options: {provider: Other, endpoint: "$endpoint", region: us-east-1,
                access_key_id: bench, secret_access_key: bench-secret}
  sync:
    - name: tree
      path: $src
      remote_path: "{org}/{project}/{env}/tree"
      direction: push-only
      interval: 60
      exclude: ["node_modules/**", "target/**", ".git/**"]
  lease: off
YAML
mkbucket coltecd-bench; mkbucket rclone-bench
export COLTEC_STATE_DIR=$work/state

# run LABEL CMD... : prints "wall_s rss_mib LIST GET HEAD PUT DELETE MPU"
run() {
  local before; before=$(wc -l <"$log")
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  sleep 0.2
  local counts; counts=$(tail -n +"$((before + 1))" "$log" | python3 -c '
import re, sys
c = dict(LIST=0, GET=0, HEAD=0, PUT=0, DELETE=0, MPU=0)
for line in sys.stdin:
    m = re.search(r"\"(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP", line)
    if not m: continue
    meth, path = m.groups()
    if "uploadId=" in path or "uploads" in path: c["MPU"] += 1
    elif meth == "GET" and ("list-type" in path or re.match(r"^/[^/?]+/?(\?|$)", path)): c["LIST"] += 1
    elif meth == "POST" and "delete" in path: c["DELETE"] += 1
    elif meth in c: c[meth] += 1
print(" ".join(str(c[k]) for k in ("LIST","GET","HEAD","PUT","DELETE","MPU")))')
  read -r wall rss <"$work/time"
  echo "$wall $((rss / 1024)) $counts"
}

row() { printf '| %s | %s | %s s | %s MiB | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" $3 $4 $5 $6 $7 $8 $9 "${10}"; }

echo "| step | tool | wall | peak RSS | LIST | GET | HEAD | PUT | DELETE | multipart |"
echo "|---|---|---|---|---|---|---|---|---|---|"
change() { python3 -c "import sys; open(sys.argv[1],'ab').write(b'changed')" "$src/d07/s03/f00357.txt"; }

row "initial push" coltecd $(run "$bin" --config "$work/spec.yaml" sync --once)
row "initial push" rclone  $(run rclone sync "$src" moto:rclone-bench/tree --transfers $transfers --checkers $checkers "${excl[@]}")
row "no-op pass" coltecd $(run "$bin" --config "$work/spec.yaml" sync --once)
row "no-op pass" rclone  $(run rclone sync "$src" moto:rclone-bench/tree --transfers $transfers --checkers $checkers "${excl[@]}")
change
row "one file changed" coltecd $(run "$bin" --config "$work/spec.yaml" sync --once)
row "one file changed" rclone  $(run rclone sync "$src" moto:rclone-bench/tree --transfers $transfers --checkers $checkers "${excl[@]}")
row "restore (empty dir)" coltecd $(run "$bin" --config "$work/spec.yaml" restore --to "$work/restore-coltecd")
row "restore (empty dir)" rclone  $(run rclone sync moto:rclone-bench/tree "$work/restore-rclone" --transfers $transfers --checkers $checkers)
diff -r "$work/restore-coltecd" "$work/restore-rclone" >/dev/null && echo "(both restores identical)" || echo "(restores DIFFER)"
