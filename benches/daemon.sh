#!/usr/bin/env bash
# Daemon goals of issue 6, measured on the real binary (`coltecd start`):
#
#  (a) change-to-remote latency: a small file written into a watched target
#      until it is readable on the remote (local directory remote and S3 on
#      moto), min/median/max over N edits, with the default debounce (2 s)
#      and with `daemon.debounce: 200ms`;
#  (b) an idle daemon with a 100k-file tree on moto (lease on): RSS after the
#      first sync and after a minute idle, CPU time used in that minute, and
#      the S3 requests in that minute by kind (only lease renewals expected).
#
#   benches/daemon.sh [--small] [--only a|b]
#
#   --small   2k-file tree, 20 s idle window, 5 edits (quick check)
#   --files N / --idle S   tree size / idle window of part (b)
#
# Needs python3 (moto is installed into target/moto-venv). Prints markdown
# tables on stdout; progress on stderr. Every daemon is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

files=100000; idle=60; edits=10; only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --small) files=2000; idle=20; edits=5 ;;
    --only) only=$2; shift ;;
    --files) files=$2; shift ;;
    --idle) idle=$2; shift ;;
    *) echo "usage: benches/daemon.sh [--small] [--only a|b] [--files N] [--idle S]" >&2; exit 2 ;;
  esac
  shift
done

cargo build --release --quiet
bin=$PWD/target/release/coltecd
tests/provision-moto.sh target/moto-venv
count=$PWD/benches/s3count.py

work=$(mktemp -d /tmp/coltecd-daemon.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$work/moto.log
target/moto-venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto=$!
specs=()
cleanup() {
  for s in "${specs[@]}"; do
    COLTEC_STATE_DIR=$(dirname "$s")/state "$bin" --config "$s" stop >/dev/null 2>&1 || true
  done
  kill "$moto" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
endpoint=http://127.0.0.1:$port
curl -sf -X PUT "$endpoint/coltecd-daemon" -o /dev/null

# mkspec DIR REMOTE(local|s3) DEBOUNCE [EXTRA-DAEMON-YAML]: a one-target
# bidirectional spec in DIR/spec.yaml syncing DIR/root; state in DIR/state.
mkspec() {
  local dir=$1 kind=$2 debounce=$3 extra=${4:-}
  mkdir -p "$dir/root"
  local remote
  if [ "$kind" = local ]; then
    remote="    r: {type: local, path_prefix: $dir/remote}"
  else
    remote="    r:
      type: s3
      bucket: coltecd-daemon
      path_prefix: $(basename "$dir")
      options: {provider: Other, endpoint: \"$endpoint\", region: us-east-1,
                access_key_id: bench, secret_access_key: bench-secret}"
  fi
  cat >"$dir/spec.yaml" <<YAML
name: bench
metadata: {org: bench, project: daemon, environment: dev}
persistence:
  enabled: true
  mode: replicated
  default_remote: r
  remotes:
$remote
  sync:
    - name: tree
      path: $dir/root
      remote_path: "{org}/{project}/{env}/tree"
      direction: bidirectional
      exclude: ["node_modules/**", "target/**", ".git/**"]
  daemon:
    log_dir: $dir/logs
${debounce:+    debounce: $debounce}
$extra
YAML
  specs+=("$dir/spec.yaml")
}

# start DIR: start the daemon of DIR/spec.yaml, set PID.
start() {
  local out
  out=$(COLTEC_STATE_DIR=$1/state "$bin" --config "$1/spec.yaml" start) \
    || { echo "coltecd start failed for $1" >&2; tail -20 "$1"/logs/* >&2; exit 1; }
  echo "  $out" >&2
  PID=$(sed -n 's/.*(pid \([0-9]*\)).*/\1/p' <<<"$out")
  [ -n "$PID" ] || { echo "no pid in: $out" >&2; exit 1; }
}
stop() { COLTEC_STATE_DIR=$1/state "$bin" --config "$1/spec.yaml" stop >&2; }

# --- (a) change-to-remote latency -------------------------------------------
latency() { # DIR KIND [N] : prints "min median max all..." in ms
  python3 - "$1/root" "$2" "$1/remote/bench/daemon/dev/tree" \
    "$endpoint/coltecd-daemon/KEY:$(basename "$1")/bench/daemon/dev/tree" "${3:-$edits}" <<'PY'
import os, statistics, sys, time, urllib.parse, urllib.request
root, kind, local_remote, s3_url, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def present(name):
    if kind == "local":
        return os.path.exists(os.path.join(local_remote, name))
    # moto refuses unsigned object reads (403) but lists anonymously.
    bucket_url, _, prefix = s3_url.partition("/KEY:")
    url = f"{bucket_url}?list-type=2&prefix={urllib.parse.quote(prefix + '/' + name)}"
    with urllib.request.urlopen(url, timeout=5) as r:
        return b"<Key>" in r.read()
out = []
for i in range(n):
    name = f"edit-{i:02d}.txt"
    with open(os.path.join(root, name), "w") as f:
        f.write(f"edit {i} at {time.time()}\n")
    t0 = time.monotonic()
    while not present(name):
        if time.monotonic() - t0 > 60:
            sys.exit(f"{name} not on the remote after 60 s")
        time.sleep(0.02)
    out.append((time.monotonic() - t0) * 1000)
    time.sleep(1.0)  # separate debounce windows
print(f"{min(out):.0f} {statistics.median(out):.0f} {max(out):.0f}", " ".join(f"{x:.0f}" for x in out))
PY
}

if [ -z "$only" ] || [ "$only" = a ]; then
  echo
  echo "| remote | debounce | edits | min | median | max | all (ms) |"
  echo "|---|---|---|---|---|---|---|"
  for kind in local s3; do
    for deb in "" 200ms; do
      dir=$work/lat-$kind-${deb:-default}
      mkspec "$dir" "$kind" "$deb"
      echo "latency: $kind remote, debounce ${deb:-2s (default)}" >&2
      start "$dir"
      sleep 1
      res=$(latency "$dir" "$kind") || { echo "latency run failed ($kind, ${deb:-default})" >&2; exit 1; }
      read -r mn med mx all <<<"$res"
      stop "$dir"
      echo "| $kind | ${deb:-2s (default)} | $edits | $mn ms | $med ms | $mx ms | $all |"
    done
  done
fi

# --- (b) idle daemon with a large tree --------------------------------------
if [ -z "$only" ] || [ "$only" = b ]; then
  dir=$work/idle
  # The first sync uploads every file; the default 100 requests/s would make
  # that setup take files/100 seconds. The idle minute makes no such request.
  mkspec "$dir" s3 "" "    max_requests_per_second: 2000"
  echo "generating $files files in $dir/root" >&2
  python3 - "$dir/root" "$files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"a{i // 10000:02d}", f"b{(i // 100) % 100:02d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}.txt"), "wb") as f:
        f.write(os.urandom(64 + i % 1024))
for ex in ("node_modules/pkg", "target/debug", ".git/objects"):
    d = os.path.join(root, ex); os.makedirs(d, exist_ok=True)
    for i in range(1000):
        with open(os.path.join(d, f"x{i}"), "wb") as f: f.write(b"x")
PY
  tck=$(getconf CLK_TCK)
  cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
  rss() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
  hwm() { awk '/^VmHWM/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
  echo "idle: first sync of $files files (coltecd start)" >&2
  t0=$(date +%s.%N)
  start "$dir"
  t1=$(date +%s.%N)
  rss0=$(rss "$PID"); hwm0=$(hwm "$PID"); cpu0=$(cpu "$PID")
  before=$(wc -l <"$log")
  echo "idle: watching pid $PID for $idle s" >&2
  sleep "$idle"
  rss1=$(rss "$PID"); hwm1=$(hwm "$PID"); cpu1=$(cpu "$PID")
  tail -n +"$((before + 1))" "$log" | python3 "$count" --by-key 2>"$work/idle-requests" >"$work/idle-counts"
  read -r L G H P D M O <"$work/idle-counts"
  threads=$(ls "/proc/$PID/task" | wc -l)
  # Then a few small edits in the big tree (default debounce): latency and
  # what each costs on the wire (the daemon defers rewriting the target's
  # manifest, .coltec/manifest.json, to every 10 minutes and its stop; the
  # first change after a rewrite PUTs the .coltec/manifest.dirty marker).
  echo "idle: 3 edits in the $files-file tree" >&2
  before=$(wc -l <"$log")
  big=$(latency "$dir" s3 3) || { echo "latency run failed (big tree)" >&2; exit 1; }
  sleep 3
  tail -n +"$((before + 1))" "$log" | python3 "$count" --by-key 2>"$work/edit-requests" >"$work/edit-counts"
  rss2=$(rss "$PID"); hwm2=$(hwm "$PID")
  manifest=$(env -u AWS_CA_BUNDLE rclone lsl --config /dev/null \
    ":s3,provider=Other,endpoint='$endpoint',access_key_id=bench,secret_access_key=bench-secret:coltecd-daemon/idle/bench/daemon/dev/tree/.coltec/manifest.json" \
    2>/dev/null | awk '{printf "%.2f MiB (%d bytes)", $1/1048576, $1}') || manifest="(rclone lsl failed)"
  stop "$dir"
  echo
  echo "| idle daemon, $files files on S3 (moto), lease on | value |"
  echo "|---|---|"
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "| first sync (`coltecd start` until ready) | %.1f s |\n", b-a}'
  echo "| RSS after first sync (VmRSS / peak VmHWM) | $rss0 MiB / $hwm0 MiB |"
  echo "| RSS after $idle s idle (VmRSS / peak VmHWM) | $rss1 MiB / $hwm1 MiB |"
  awk -v c0="$cpu0" -v c1="$cpu1" -v t="$tck" -v w="$idle" \
    'BEGIN{s=(c1-c0)/t; printf "| CPU time in the %d s idle window (utime+stime) | %.2f s (%.2f%% of one core) |\n", w, s, 100*s/w}'
  echo "| threads | $threads |"
  echo "| S3 requests in the idle window | LIST $L, GET $G, HEAD $H, PUT $P, DELETE $D, multipart $M, other $O |"
  read -r mn med mx all <<<"$big"
  read -r L G H P D M O <"$work/edit-counts"
  echo "| 3 small edits afterwards (debounce 2 s): latency min / median / max | $mn / $med / $mx ms |"
  echo "| S3 requests for those 3 edits (plus the benchmark's polling LISTs) | LIST $L, GET $G, HEAD $H, PUT $P, DELETE $D, multipart $M, other $O |"
  echo "| size of .coltec/manifest.json (written by the first sync; the daemon defers rewrites) | $manifest |"
  echo "| RSS after the edits (VmRSS / peak VmHWM) | $rss2 MiB / $hwm2 MiB |"
  echo
  echo "Requests in the idle window (kind method path status):"
  echo
  sed 's/^/    /' "$work/idle-requests"
  echo
  echo "Requests for the 3 edits, without the benchmark's polling (kind method path status):"
  echo
  grep -v '^LIST GET /coltecd-daemon?list-type=2&prefix=idle/bench/daemon/dev/tree/edit-' "$work/edit-requests" | sed 's/^/    /' || true
fi
