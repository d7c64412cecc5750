#!/usr/bin/env bash
# Side-by-side benchmark: mjpegd against µStreamer (Debian's ustreamer), both reading the same fake V4L2
# camera (1280x720, 30 fps, MJPEG passthrough), loaded by `mjpegd bench` over loopback.
#
#   bash bench/compare.sh                 # the full table: N = 1 10 100 500 1000 2000 3000, 3 runs each
#   NS="1 100" RUNS=1 SEARCH= bash bench/compare.sh   # a quick look
#
# With SOURCES="camera push", each run also has a third row: mjpegd whose camera is pushed (`source =
# "push"`), fed by ffmpeg reading the same fake camera and pushing it as it comes (`-c copy -f mpjpeg
# -method POST` to /cams/cam/push), loaded by the same `mjpegd bench` in turn with the other two:
#   SOURCES="camera push" NS="100 1000" RUNS=3 SEARCH= EXTRAS=0 bash bench/compare.sh
#
# Then mjpegd alone at the N of SEARCH (ascending, SEARCH_RUNS runs each, stopping at the first N whose
# median client falls below 29 fps): the largest N at which clients still get the source's rate.
#
# Everything runs on 127.0.0.1, bounded in time, and stops by itself. Results: bench/results/*.json and
# a Markdown table on stdout (paste it into bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
NS=${NS:-"1 10 100 500 1000 2000 3000"}
SEARCH=${SEARCH-"2500 3000 3500 4000 5000 6000"}
SEARCH_RUNS=${SEARCH_RUNS:-1}
RUNS=${RUNS:-3}
WINDOW=${WINDOW:-10s}
WARMUP=${WARMUP:-3s}
POLICY=${POLICY:-latest}
SOURCES=${SOURCES:-camera}
PUSH_KEY=bench-push-key-0123456789
OUT=bench/results
mkdir -p "$OUT"

bash scripts/setup.sh
command -v iperf3 >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iperf3; }
cargo build --release --locked -p mjpegd -p fakecam
MJPEGD=target/release/mjpegd
FAKECAM=target/release/fakecam
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d /tmp/mjpegd-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  fusermount3 -u "$work/cam" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The same 90 JPEGs for everyone.
mkdir -p "$work/frames" "$work/cam"
ffmpeg -loglevel error -f lavfi -i testsrc2=size=1280x720:rate=30 -frames:v 90 -q:v 4 "$work/frames/%04d.jpg"
frame_bytes=$(du -cb "$work"/frames/*.jpg | tail -1 | cut -f1)
echo "frames: 90 JPEGs, average $((frame_bytes / 90)) bytes" >&2

"$FAKECAM" --mount "$work/cam" --width 1280 --height 720 --fps 30 --format mjpeg --frames "$work/frames" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -e "$work/cam/video0" ] && break; sleep 0.1; done

# The machine's loopback ceiling, in the same session.
iperf3 -s -1 -p 5299 >/dev/null 2>&1 &
sleep 0.5
ceiling=$(iperf3 -c 127.0.0.1 -p 5299 -P 2 -t 5 -J | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/8e6))')
echo "loopback ceiling: $ceiling MB/s (iperf3, 2 streams)" >&2

start_server() { # $1 name, $2 port
  case "$1" in
    ustreamer)
      ustreamer --device="$work/cam/video0" --format=MJPEG --encoder=HW --resolution=1280x720 \
        --desired-fps=30 --host=127.0.0.1 --port="$2" >/dev/null 2>&1 &
      ;;
    mjpegd)
      "$MJPEGD" --device "$work/cam/video0" --format mjpeg --resolution 1280x720 --fps 30 \
        --capture always --listen "127.0.0.1:$2" --max-clients 20000 >/dev/null 2>&1 &
      ;;
    mjpegd-push)
      printf '[cameras.cam]\nsource = "push"\npush-key = "%s"\n' "$PUSH_KEY" > "$work/push.toml"
      "$MJPEGD" --config "$work/push.toml" --listen "127.0.0.1:$2" --max-clients 20000 >/dev/null 2>&1 &
      server_pid=$!
      for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$2/state" && break; sleep 0.1; done
      # The pusher: the fake camera's JPEGs as they come, unchanged, in one endless multipart POST.
      ffmpeg -loglevel error -nostdin -f v4l2 -input_format mjpeg -video_size 1280x720 -framerate 30 \
        -i "$work/cam/video0" -c copy -flush_packets 1 -f mpjpeg -method POST \
        "http://127.0.0.1:$2/cams/cam/push?key=$PUSH_KEY" >/dev/null 2>&1 &
      pusher_pid=$!
      pids+=("$pusher_pid")
      ;;
  esac
  [ "$1" = mjpegd-push ] || server_pid=$!
  local snapshot=/snapshot; [ "$1" = mjpegd-push ] && snapshot=/cams/cam/snapshot
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$2$snapshot" && return; sleep 0.1; done
  echo "$1 did not start" >&2; exit 1
}

stop_server() {
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  if [ -n "${pusher_pid:-}" ]; then
    kill "$pusher_pid" 2>/dev/null || true; wait "$pusher_pid" 2>/dev/null || true
    pusher_pid=
  fi
}

bench() { # $1 server, $2 port, $3 path, $4 out, then extra bench flags
  local server=$1 port=$2 path=$3 out=$4; shift 4
  "$MJPEGD" bench "http://127.0.0.1:$port$path" --duration "$WINDOW" --warmup "$WARMUP" \
    --pid "$server_pid" --loopback-only --json "$@" > "$out" || true
  echo "$server $(basename "$out" .json): $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["normal"]["fps"]["median"], "fps median,", round(d["frames_per_s"]), "frames/s, p99", (d["normal"]["latency_ms"] or {}).get("p99"), "ms,", d["errors"])' "$out")" >&2
}

port=8300
# The two servers take turns run by run, so that whatever else the machine does weighs on both alike.
for n in $NS; do
  for run in $(seq "$RUNS"); do
    servers="ustreamer mjpegd"; [[ " $SOURCES " == *" push "* ]] && servers="$servers mjpegd-push"
    for server in $servers; do
      port=$((port + 1))
      start_server "$server" "$port"
      case "$server" in
        ustreamer) path=/stream ;;
        mjpegd) path="/stream?delivery=$POLICY" ;;
        mjpegd-push) path="/cams/cam/stream?delivery=$POLICY" ;;
      esac
      bench "$server" "$port" "$path" "$OUT/$server-$n-$run.json" --clients "$n"
      stop_server
    done
  done
done

# The largest N at which mjpegd's clients still get >= 29 fps (median over the clients).
for n in $SEARCH; do
  ok=1
  for run in $(seq "$SEARCH_RUNS"); do
    port=$((port + 1))
    start_server mjpegd "$port"
    bench mjpegd "$port" "/stream?delivery=$POLICY" "$OUT/search-mjpegd-$n-$run.json" --clients "$n" --connect-batch 500
    stop_server
    python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["normal"]["fps"]["median"] >= 29 else 1)' \
      "$OUT/search-mjpegd-$n-$run.json" || ok=0
  done
  [ "$ok" = 1 ] || break
done

if [ "${EXTRAS:-1}" = 1 ]; then
  # mjpegd alone: every frame under 'all', slow clients, and 10,000 clients at 1 fps.
  port=$((port + 1)); start_server mjpegd "$port"
  bench mjpegd "$port" "/stream?delivery=all" "$OUT/extra-all-100.json" --clients 100
  bench mjpegd "$port" "/stream" "$OUT/extra-slow-100.json" --clients 100 --slow 10 --slow-rate 200KB --slow-rcvbuf 16KiB
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  port=$((port + 1)); start_server ustreamer "$port"
  bench ustreamer "$port" "/stream" "$OUT/extra-ustreamer-slow-100.json" --clients 100 --slow 10 --slow-rate 200KB --slow-rcvbuf 16KiB
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  port=$((port + 1)); start_server mjpegd "$port"
  WINDOW=30s bench mjpegd "$port" "/stream?fps=1" "$OUT/extra-10k-fps1.json" --clients 10000 --connect-batch 500
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
fi

SEARCH_NS="$SEARCH" SEARCH_RUNS="$SEARCH_RUNS" python3 bench/table.py "$OUT" "$ceiling" "$NS" "$RUNS"
