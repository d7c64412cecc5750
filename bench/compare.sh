#!/usr/bin/env bash
# Side-by-side benchmark: mjpegd against µStreamer (Debian's ustreamer), both reading the same fake V4L2
# camera (1280x720, 30 fps, MJPEG passthrough), loaded by `mjpegd bench` over loopback.
#
#   bash bench/compare.sh                 # the full table: N = 1 10 100 500 1000 2000 3000, 3 runs each
#   NS="1 100" RUNS=1 SEARCH= bash bench/compare.sh   # a quick look
#
# Then mjpegd alone at the N of SEARCH (ascending, SEARCH_RUNS runs each, stopping at the first N whose
# median client falls below 29 fps): the largest N at which clients still get the source's rate.
#
# With TLS=1 (the default) each N also has three HTTPS rows: mjpegd terminating TLS itself (--tls-cert),
# the setup µStreamer users deploy, nginx terminating TLS in front of µStreamer, and nginx terminating TLS
# in front of mjpegd (worker_processes auto; the server's CPU is then nginx's master and workers plus the
# server behind it). A throwaway self-signed P-256 certificate;
# the load tool reads with --insecure. SEARCH_TLS: the same search for mjpegd over HTTPS.
#   NS="250 1000" RUNS=3 SEARCH= SEARCH_TLS= EXTRAS=0 bash bench/compare.sh   # the HTTPS rows, reduced
#
# With SOURCES="camera push", each run also has a row of mjpegd whose camera is pushed (`source =
# "push"`), fed by ffmpeg reading the same fake camera and pushing it as it comes (`-c copy -f mpjpeg
# -method POST` to /cams/cam/push), loaded by the same `mjpegd bench` in turn with the others:
#   SOURCES="camera push" TLS=0 NS="100 1000" RUNS=3 SEARCH= EXTRAS=0 bash bench/compare.sh
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
TLS=${TLS:-1}
SEARCH_TLS=${SEARCH_TLS-"1000 1500 2000 2500 3000"}
SOURCES=${SOURCES:-camera}
PUSH_KEY=bench-push-key-0123456789
OUT=${OUT:-bench/results}
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
  for p in "${pids[@]}" ${server_pid:-} ${stop_extra:-}; do kill "$p" 2>/dev/null || true; done
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

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
SERVERS="ustreamer mjpegd"
[ "$TLS" = 1 ] && SERVERS="$SERVERS nginx-tls-ustreamer mjpegd-tls nginx-tls-mjpegd"
[[ " $SOURCES " == *" push "* ]] && SERVERS="$SERVERS mjpegd-push"

# The machine's loopback ceiling, in the same session.
iperf3 -s -1 -p 5299 >/dev/null 2>&1 &
sleep 0.5
ceiling=$(iperf3 -c 127.0.0.1 -p 5299 -P 2 -t 5 -J | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/8e6))')
echo "loopback ceiling: $ceiling MB/s (iperf3, 2 streams)" >&2

# nginx terminating TLS in front of µStreamer on $2 (docs/recipes/nginx.conf's proxy settings).
nginx_conf() { # $1 listen port, $2 upstream port
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<EOF
worker_processes auto;
worker_rlimit_nofile 65536;
events { worker_connections 30000; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi; uwsgi_temp_path $work/nginx/uwsgi; scgi_temp_path $work/nginx/scgi;
  server {
    listen 127.0.0.1:$1 ssl;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    location / {
      proxy_pass http://127.0.0.1:$2;
      proxy_http_version 1.1;
      proxy_buffering off;
      chunked_transfer_encoding off;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
EOF
}

start_server() { # $1 name, $2 port
  local scheme=http extra_pid= probe=/snapshot whole_setup=1
  case "$1" in
    ustreamer)
      ustreamer --device="$work/cam/video0" --format=MJPEG --encoder=HW --resolution=1280x720 \
        --desired-fps=30 --host=127.0.0.1 --port="$2" >/dev/null 2>&1 &
      ;;
    mjpegd)
      "$MJPEGD" --device "$work/cam/video0" --format mjpeg --resolution 1280x720 --fps 30 \
        --capture always --listen "127.0.0.1:$2" --max-clients 20000 >/dev/null 2>&1 &
      ;;
    mjpegd-tls)
      scheme=https
      "$MJPEGD" --device "$work/cam/video0" --format mjpeg --resolution 1280x720 --fps 30 \
        --capture always --listen "127.0.0.1:$2" --max-clients 20000 \
        --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" >/dev/null 2>&1 &
      ;;
    nginx-tls-ustreamer)
      scheme=https
      ustreamer --device="$work/cam/video0" --format=MJPEG --encoder=HW --resolution=1280x720 \
        --desired-fps=30 --host=127.0.0.1 --port="$(($2 + 1000))" >/dev/null 2>&1 &
      extra_pid=$!
      stop_extra=$extra_pid
      nginx_conf "$2" "$(($2 + 1000))"
      nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g "daemon off; pid $work/nginx/nginx.pid; error_log stderr crit;" >/dev/null 2>&1 &
      ;;
    nginx-tls-mjpegd)
      scheme=https
      "$MJPEGD" --device "$work/cam/video0" --format mjpeg --resolution 1280x720 --fps 30 \
        --capture always --listen "127.0.0.1:$(($2 + 1000))" --max-clients 20000 >/dev/null 2>&1 &
      extra_pid=$!
      stop_extra=$extra_pid
      nginx_conf "$2" "$(($2 + 1000))"
      nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g "daemon off; pid $work/nginx/nginx.pid; error_log stderr crit;" >/dev/null 2>&1 &
      ;;
    mjpegd-push)
      probe=/cams/cam/snapshot
      whole_setup=  # the server's CPU only: the pusher (ffmpeg, copying) is the camera's side
      printf '[cameras.cam]\nsource = "push"\npush-key = "%s"\n' "$PUSH_KEY" > "$work/push.toml"
      # The pusher, once the server answers: the fake camera's JPEGs as they come, unchanged, in one
      # endless multipart POST.
      (
        for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$2/state" && break; sleep 0.1; done
        exec ffmpeg -loglevel error -nostdin -f v4l2 -input_format mjpeg -video_size 1280x720 -framerate 30 \
          -i "$work/cam/video0" -c copy -flush_packets 1 -f mpjpeg -method POST \
          "http://127.0.0.1:$2/cams/cam/push?key=$PUSH_KEY" >/dev/null 2>&1
      ) &
      extra_pid=$!
      "$MJPEGD" --config "$work/push.toml" --listen "127.0.0.1:$2" --max-clients 20000 >/dev/null 2>&1 &
      ;;
  esac
  server_pid=$!
  server_pids=$server_pid
  stop_extra=$extra_pid
  server_scheme=$scheme
  for _ in $(seq 100); do curl -ksf -o /dev/null "$scheme://127.0.0.1:$2$probe" && break; sleep 0.1; done
  curl -ksf -o /dev/null "$scheme://127.0.0.1:$2$probe" || { echo "$1 did not start" >&2; exit 1; }
  # The CPU of the whole setup: nginx's master and workers, and the server behind it.
  [ -n "$extra_pid" ] && [ -n "$whole_setup" ] && server_pids="$server_pid,$(pgrep -d, -P "$server_pid"),$extra_pid"
  return 0
}

stop_server() {
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  if [ -n "$stop_extra" ]; then kill "$stop_extra"; wait "$stop_extra" 2>/dev/null || true; fi
}

bench() { # $1 server, $2 port, $3 path, $4 out, then extra bench flags
  local server=$1 port=$2 path=$3 out=$4; shift 4
  "$MJPEGD" bench "$server_scheme://127.0.0.1:$port$path" --duration "$WINDOW" --warmup "$WARMUP" \
    --pid "$server_pids" --insecure --loopback-only --json "$@" > "$out" || true
  echo "$server $(basename "$out" .json): $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["normal"]["fps"]["median"], "fps median,", round(d["frames_per_s"]), "frames/s, p99", (d["normal"]["latency_ms"] or {}).get("p99"), "ms,", d["errors"])' "$out")" >&2
}

port=8300
# The servers take turns run by run, so that whatever else the machine does weighs on both alike.
for n in $NS; do
  for run in $(seq "$RUNS"); do
    for server in $SERVERS; do
      port=$((port + 1))
      start_server "$server" "$port"
      path=/stream; [ "${server%mjpegd*}" != "$server" ] && path="/stream?delivery=$POLICY"
      [ "$server" = mjpegd-push ] && path="/cams/cam/stream?delivery=$POLICY"
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
# The same over HTTPS, mjpegd terminating TLS itself.
[ "$TLS" = 1 ] || SEARCH_TLS=
for n in $SEARCH_TLS; do
  ok=1
  for run in $(seq "$SEARCH_RUNS"); do
    port=$((port + 1))
    start_server mjpegd-tls "$port"
    bench mjpegd-tls "$port" "/stream?delivery=$POLICY" "$OUT/search-mjpegd-tls-$n-$run.json" --clients "$n" --connect-batch 500
    stop_server
    python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["normal"]["fps"]["median"] >= 29 else 1)' \
      "$OUT/search-mjpegd-tls-$n-$run.json" || ok=0
  done
  [ "$ok" = 1 ] || break
done

if [ "${EXTRAS:-1}" = 1 ]; then
  # mjpegd alone: every frame under 'all', slow clients, and 10,000 clients at 1 fps.
  port=$((port + 1)); start_server mjpegd "$port"
  bench mjpegd "$port" "/stream?delivery=all" "$OUT/extra-all-100.json" --clients 100
  bench mjpegd "$port" "/stream" "$OUT/extra-slow-100.json" --clients 100 --slow 10 --slow-rate 200KB --slow-rcvbuf 16KiB
  stop_server
  port=$((port + 1)); start_server ustreamer "$port"
  bench ustreamer "$port" "/stream" "$OUT/extra-ustreamer-slow-100.json" --clients 100 --slow 10 --slow-rate 200KB --slow-rcvbuf 16KiB
  stop_server
  port=$((port + 1)); start_server mjpegd "$port"
  WINDOW=30s bench mjpegd "$port" "/stream?fps=1" "$OUT/extra-10k-fps1.json" --clients 10000 --connect-batch 500
  stop_server
fi

SEARCH_NS="$SEARCH" SEARCH_TLS_NS="$SEARCH_TLS" SEARCH_RUNS="$SEARCH_RUNS" python3 bench/table.py "$OUT" "$ceiling" "$NS" "$RUNS"
