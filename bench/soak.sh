#!/usr/bin/env bash
# Soak: hours of churn compressed into minutes, on loopback, bounded in time; stops by itself.
#   bash bench/soak.sh            # 180 s
#   SOAK_SECONDS=600 bash bench/soak.sh
# mjpegd reads the fake camera (1280x720, 30 fps). Each round, in parallel: 200 latest clients (20 slow),
# 50 'all' clients (gaps are checked), 20 lockstep clients (2 slow), and 50 connections that open a stream
# and drop it at once; every other round the camera is unplugged for 2 s and plugged back. At the end the
# server's RSS must be back near its baseline and its open file descriptors exactly as before.
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SECONDS=${SOAK_SECONDS:-180}
bash scripts/setup.sh
cargo build --release --locked -p mjpegd -p fakecam
MJPEGD=target/release/mjpegd
work=$(mktemp -d /tmp/mjpegd-soak.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5; fusermount3 -u "$work/cam" 2>/dev/null || true; rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/cam"
target/release/fakecam --mount "$work/cam" --width 1280 --height 720 --fps 30 >/dev/null 2>&1 &
cam=$!; pids+=($cam)
for _ in $(seq 50); do [ -e "$work/cam/video0" ] && break; sleep 0.1; done
port=8477
"$MJPEGD" --device "$work/cam/video0" --capture always --listen 127.0.0.1:$port --buffer-memory 64MiB \
  --lockstep-timeout 1s >"$work/server.log" 2>&1 &
server=$!; pids+=($server)
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/snapshot" && break; sleep 0.1; done
url="http://127.0.0.1:$port/stream"
rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
fds() { ls "/proc/$server/fd" | wc -l; }
sleep 2
rss0=$(rss); fds0=$(fds)
echo "baseline: rss ${rss0} KiB, ${fds0} fds" >&2

end=$((SECONDS + SOAK_SECONDS)); round=0; joins=0; all_gaps=0; all_clients=0; all_evicted=0
while [ $SECONDS -lt $end ]; do
  round=$((round + 1))
  "$MJPEGD" bench "$url" -n 200 --slow 20 --slow-rcvbuf 16KiB --duration 5s --warmup 1s --loopback-only --json >"$work/latest.json" &
  b1=$!
  "$MJPEGD" bench "$url" -n 50 --delivery all --duration 5s --warmup 1s --loopback-only --json >"$work/all.json" &
  b2=$!
  "$MJPEGD" bench "$url" -n 20 --slow 2 --delivery lockstep --slow-delivery lockstep --duration 5s --warmup 1s --loopback-only --json >"$work/lockstep.json" &
  b3=$!
  for _ in $(seq 50); do curl -s --max-time 0.2 -o /dev/null "$url" || true; done &
  b4=$!
  if [ $((round % 2)) = 0 ]; then sleep 1; kill -USR1 $cam; sleep 2; kill -USR2 $cam; fi
  wait $b1 $b2 $b3 $b4 || true
  joins=$((joins + 320))
  read -r g c e < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["normal"]["gaps"], d["clients"], sum(v for k,v in d["errors"].items() if "closed" in k))' "$work/all.json")
  all_gaps=$((all_gaps + g)); all_clients=$((all_clients + c)); all_evicted=$((all_evicted + e))
  echo "round $round: joins $joins, rss $(rss) KiB, fds $(fds), 'all' gaps $g" >&2
done
sleep 7   # clients gone, connections closed, camera still capturing
rss1=$(rss); fds1=$(fds)
state=$(curl -s "http://127.0.0.1:$port/state")
evictions=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["evictions"])' <<<"$state")
echo "after ${SOAK_SECONDS} s, ${round} rounds, ${joins} client joins: rss ${rss0} -> ${rss1} KiB, fds ${fds0} -> ${fds1}, 'all' clients ${all_clients} with ${all_gaps} sequence gaps (${all_evicted} evicted), evictions ${evictions}"
if ! kill -0 $server 2>/dev/null; then echo "FAIL: the server died" >&2; exit 1; fi
[ "$fds1" -eq "$fds0" ] || { echo "FAIL: file descriptors leaked" >&2; exit 1; }
[ "$all_gaps" -eq 0 ] || { echo "FAIL: an 'all' client missed frames" >&2; exit 1; }
[ $((rss1 - rss0)) -lt 16384 ] || { echo "FAIL: RSS grew by more than 16 MiB" >&2; exit 1; }
echo "PASS"
