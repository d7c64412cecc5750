#!/usr/bin/env python3
"""What a size variant costs: server CPU with 1 and with 40 clients of one variant, and the latency a
transcode adds, for 720p to 320 wide and 1080p to 640 wide.

    python3 bench/variants.py [target/release/mjpegd] [SECONDS] [RUNS]

For each source size, one mjpegd replays 30 JPEGs of ffmpeg's testsrc2 (made once, so the source costs no
encoding) at 30 fps with --capture always, and `mjpegd bench` (loopback only) measures, in turn:
the original stream with 1 client, the variant with 1 client, the variant with 40 clients. Latency is the
receipt time minus X-Timestamp (the capture time, which a variant's frames keep), so the variant's latency
minus the original's is what the transcode adds. Each cell is the median of RUNS runs (default 3) of
SECONDS (default 10) after a 2 s warm-up. The server's CPU comes from /proc (bench --pid); the bench tool's
own CPU is on the same cores and not counted. Stops by itself.
"""
import json, os, statistics, subprocess, sys, time, urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/mjpegd"
SECONDS = sys.argv[2] if len(sys.argv) > 2 else "10"
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
PORT = 18093
CASES = [("1280x720", "width=320"), ("1920x1080", "width=640")]


def frames(size):
    folder = f"/tmp/mjpegd-variant-bench-{size}"
    if not os.path.exists(os.path.join(folder, "030.jpg")):
        os.makedirs(folder, exist_ok=True)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size={size}:rate=30", "-frames:v", "30", "-q:v", "4",
                        os.path.join(folder, "%03d.jpg")], check=True)
    return folder


def state():
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/state", timeout=5) as r:
        return json.load(r)["result"]


def bench(pid, path, n):
    out = subprocess.run([BIN, "bench", f"http://127.0.0.1:{PORT}{path}", "-n", str(n), "--duration",
                          f"{SECONDS}s", "--warmup", "2s", "--pid", str(pid), "--loopback-only", "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_case(size, query):
    folder = frames(size)
    rows = {"original, 1 client": [], "variant, 1 client": [], "variant, 40 clients": []}
    transcode = []
    for _ in range(RUNS):
        p = subprocess.Popen([BIN, "--listen", f"127.0.0.1:{PORT}", "--source", f"files:{folder}",
                              "--fps", "30", "--capture", "always"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.5)
            for name, path, n in [("original, 1 client", "/stream", 1),
                                  ("variant, 1 client", f"/stream?{query}", 1),
                                  ("variant, 40 clients", f"/stream?{query}", 40)]:
                rows[name].append(bench(p.pid, path, n))
            # The variant stops with its last client: one more short look with a client connected, for
            # the transcoder's own figures in /state.
            s = subprocess.Popen([BIN, "bench", f"http://127.0.0.1:{PORT}/stream?{query}", "-n", "1",
                                  "--duration", "3s", "--warmup", "1s", "--json"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(2.5)
            v = state()["variants"]
            if v:
                transcode.append((v[0]["transcode_ms"]["average"], v[0]["fps"], v[0]["frames_skipped"],
                                  v[0]["width"], v[0]["height"]))
            s.wait(30)
        finally:
            p.terminate()
            p.wait(15)
    med = lambda xs: statistics.median(xs)
    print(f"\n{size} -> {query.replace('width=', '')} wide "
          f"(variant {transcode[0][3]}x{transcode[0][4]}; transcode {med([t[0] for t in transcode]):.2f} ms "
          f"average per frame, variant at {med([t[1] for t in transcode]):.1f} fps)", flush=True)
    print("| clients | server CPU % | fps per client (median) | latency p50 ms | latency p99 ms | gaps |")
    print("|---|---|---|---|---|---|")
    base = None
    for name, rs in rows.items():
        cpu = med([r["server"]["cpu_percent"] for r in rs])
        fps = med([r["normal"]["fps"]["median"] for r in rs])
        p50 = med([r["normal"]["latency_ms"]["p50"] for r in rs])
        p99 = med([r["normal"]["latency_ms"]["p99"] for r in rs])
        gaps = med([r["normal"]["gaps"] for r in rs])
        if base is None:
            base = (p50, p99)
            added = ""
        else:
            added = f" (+{p50 - base[0]:.1f})"
        added99 = "" if name.startswith("original") else f" (+{p99 - base[1]:.1f})"
        print(f"| {name} | {cpu:.1f} | {fps:.1f} | {p50:.1f}{added} | {p99:.1f}{added99} | {gaps:.0f} |",
              flush=True)


if __name__ == "__main__":
    for size, query in CASES:
        run_case(size, query)
