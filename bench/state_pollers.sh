#!/usr/bin/env bash
# Issue 18 item 9: does polling /state of a crowded camera cost the viewers of another camera?
#
#   bash bench/state_pollers.sh [MJPEGD_BINARY] [CROWD] [POLLERS]
#
# Starts two test-pattern cameras (cam00, cam01: 320x240 at 30 fps) on a free loopback port, puts CROWD
# (2000) streams on cam00 (`mjpegd bench`), then measures one viewer of cam01 for 8 s without pollers
# and 8 s while POLLERS (8) clients poll /cams/cam00/state back to back. Everything stops by itself
# (about 45 s); the server is ended by its pid.
set -euo pipefail
BIN=${1:-target/release/mjpegd}
CROWD=${2:-2000}
POLLERS=${3:-8}
ulimit -n 16384
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$DIR/cams.toml" <<TOML
listen = "127.0.0.1:$PORT"
max-clients = $((CROWD + 100))
[cameras.cam00]
source = "pattern"
resolution = "320x240"
fps = 30
capture = "always"
[cameras.cam01]
source = "pattern"
resolution = "320x240"
fps = 30
capture = "always"
TOML
MJPEGD_LOG=warn "$BIN" --config "$DIR/cams.toml" > "$DIR/banner" 2> "$DIR/log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do grep -q page "$DIR/banner" && break; sleep 0.1; done
URL=http://127.0.0.1:$PORT
# The crowd, for the whole run (bounded by its own window).
"$BIN" bench "$URL/cams/cam00/stream" -n "$CROWD" --warmup 1s --duration 40s --loopback-only --json > "$DIR/crowd.json" &
CROWD_PID=$!
sleep 8
viewer() {
  "$BIN" bench "$URL/cams/cam01/stream" -n 1 --warmup 1s --duration 8s --loopback-only --json |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["normal"]; print("viewer fps %.1f, max frame age %.0f ms, gaps %d" % (r["fps"]["median"], r["max_frame_age_ms"], r["gaps"]))'
}
echo "crowd of $CROWD on cam00; viewer of cam01 without pollers:"
viewer
python3 - "$URL" "$POLLERS" > "$DIR/polls" <<'PY' &
import sys, threading, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
end = time.time() + 11
counts, sizes = [0] * n, [0] * n
def poll(i):
    while time.time() < end:
        body = urllib.request.urlopen(url + "/cams/cam00/state", timeout=10).read()
        counts[i] += 1
        sizes[i] = len(body)
threads = [threading.Thread(target=poll, args=(i,)) for i in range(n)]
[t.start() for t in threads]
[t.join() for t in threads]
print("%d polls of /cams/cam00/state in 11 s, %d bytes each" % (sum(counts), max(sizes)))
PY
POLL_PID=$!
sleep 0.5
echo "viewer of cam01 while $POLLERS clients poll /cams/cam00/state:"
viewer
wait $POLL_PID
cat "$DIR/polls"
kill $CROWD_PID 2>/dev/null || true
wait $CROWD_PID 2>/dev/null || true
