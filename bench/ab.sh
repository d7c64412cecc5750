#!/usr/bin/env bash
# A/B of mjpegd builds: the same fake camera and load as bench/compare.sh, each build in turn, run by run,
# so that what else the machine does weighs on all alike. For measuring one change (build the branch with
# and without it) rather than against another server.
#
#   bash bench/ab.sh NAME=BINARY NAME=BINARY ...       e.g. base=/tmp/mjpegd-main new=target/release/mjpegd
#   NS="1000 2000" RUNS=3 bash bench/ab.sh ...
#   SCHEME=https bash bench/ab.sh ...     HTTPS: each server terminates TLS itself (a throwaway self-signed
#                                         P-256 certificate), the load tool reads with --insecure
#
# The load tool is target/release/mjpegd's `bench` for every build. Loopback only, bounded, stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
NS=${NS:-"1000 2000"}
RUNS=${RUNS:-3}
WINDOW=${WINDOW:-10s}
WARMUP=${WARMUP:-3s}
POLICY=${POLICY:-latest}
SCHEME=${SCHEME:-http}
OUT=${OUT:-bench/results/ab}
BENCH=${BENCH:-target/release/mjpegd}
FAKECAM=${FAKECAM:-target/release/fakecam}
[ $# -ge 1 ] || { echo "usage: bench/ab.sh NAME=BINARY ..." >&2; exit 2; }
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d /tmp/mjpegd-ab.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  fusermount3 -u "$work/cam" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/frames" "$work/cam"
ffmpeg -loglevel error -f lavfi -i testsrc2=size=1280x720:rate=30 -frames:v 90 -q:v 4 "$work/frames/%04d.jpg"
"$FAKECAM" --mount "$work/cam" --width 1280 --height 720 --fps 30 --format mjpeg --frames "$work/frames" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -e "$work/cam/video0" ] && break; sleep 0.1; done
tls=()
if [ "$SCHEME" = https ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  tls=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
fi

port=8700
names=()
for n in $NS; do
  for run in $(seq "$RUNS"); do
    for spec in "$@"; do
      name=${spec%%=*}; bin=${spec#*=}
      [ "$n" = "${NS%% *}" ] && [ "$run" = 1 ] && names+=("$name")
      port=$((port + 1))
      "$bin" --device "$work/cam/video0" --format mjpeg --resolution 1280x720 --fps 30 \
        --capture always --listen "127.0.0.1:$port" --max-clients 20000 "${tls[@]}" >/dev/null 2>&1 &
      server_pid=$!
      for _ in $(seq 100); do curl -ksf -o /dev/null "$SCHEME://127.0.0.1:$port/snapshot" && break; sleep 0.1; done
      out="$OUT/$name-$n-$run.json"
      "$BENCH" bench "$SCHEME://127.0.0.1:$port/stream?delivery=$POLICY" --clients "$n" --duration "$WINDOW" \
        --warmup "$WARMUP" --pid "$server_pid" --loopback-only --connect-batch 500 --insecure --json > "$out" || true
      kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
      echo "$name N=$n run $run: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d["server"] or {}; print(round(d["normal"]["fps"]["median"],1), "fps,", (d["normal"]["latency_ms"] or {}).get("p99"), "ms p99,", round(s.get("cpu_percent",0)), "% CPU,", round(s.get("cpu_s_per_gb") or 0, 3), "CPU-s/GB")' "$out")" >&2
    done
  done
done

python3 - "$OUT" "$RUNS" "$NS" "${names[@]}" <<'PY'
import json, statistics, sys
out, runs, ns, names = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4:]
def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else float("nan")
print(f"Medians of {runs} runs.\n")
print("| N | build | fps per client (min / p10 / median) | delivered frames/s | MB/s | latency p99 ms | server CPU % | CPU-s per GB |")
print("|---|---|---|---|---|---|---|---|")
for n in ns:
    for name in names:
        rs = []
        for k in range(1, runs + 1):
            try:
                rs.append(json.load(open(f"{out}/{name}-{n}-{k}.json")))
            except (OSError, ValueError):
                pass
        if not rs:
            continue
        f = lambda key: med([r["normal"]["fps"].get(key) for r in rs])
        print(f"| {n} | {name} | {f('min'):.1f} / {f('p10'):.1f} / {f('median'):.1f} | {med([r['frames_per_s'] for r in rs]):.0f} | "
              f"{med([r['mb_per_s'] for r in rs]):.0f} | {med([(r['normal']['latency_ms'] or {}).get('p99') for r in rs]):.1f} | "
              f"{med([(r['server'] or {}).get('cpu_percent') for r in rs]):.0f} | {med([(r['server'] or {}).get('cpu_s_per_gb') for r in rs]):.3f} |")
PY
