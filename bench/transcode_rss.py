#!/usr/bin/env python3
"""The server's memory under a flood of snapshots of an 8K camera at distinct sizes, and after it.

    python3 bench/transcode_rss.py [target/release/mjpegd] [SECONDS] [CLIENTS] [RUNS]

One mjpegd replays three 7680x4320 JPEGs of ffmpeg's testsrc2 (made once) at 2 fps with --capture always;
CLIENTS (default 8, which is as many as may wait per camera) loopback clients ask, back to back, for /snapshot?width=W, each W different (1000 to
3838 wide: decoded at 1/2 or 1/4 in the DCT, up to 3840x2160 pixels, then resized), for SECONDS (default
30); --snapshot-timeout 60s, so every snapshot admitted is transcoded however loaded the machine. The server's VmRSS is read from /proc every 0.5 s: before, its peak during the flood, at the end of
the flood and after 10 s idle. RUNS (default 3) runs; prints each and the medians. Stops by itself.
"""
import os, re, statistics, subprocess, sys, threading, time, urllib.error, urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/mjpegd"
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
CLIENTS = int(sys.argv[3]) if len(sys.argv) > 3 else 8
RUNS = int(sys.argv[4]) if len(sys.argv) > 4 else 3
FOLDER = "/tmp/mjpegd-rss-bench-8k"


def frames():
    if not os.path.exists(os.path.join(FOLDER, "3.jpg")):
        os.makedirs(FOLDER, exist_ok=True)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=size=7680x4320:rate=3", "-frames:v", "3", "-q:v", "4",
                        "-start_number", "1", os.path.join(FOLDER, "%d.jpg")], check=True)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) / 1024


def run():
    server = subprocess.Popen(
        [BIN, "--listen", "127.0.0.1:0", "--source", f"files:{FOLDER}", "--resolution", "7680x4320",
         "--fps", "2", "--capture", "always", "--snapshot-timeout", "60s",
         "--max-connections-per-address", "1000"],
        stdout=subprocess.PIPE, env={**os.environ, "MJPEGD_LOG": "error"})
    try:
        port = None
        for line in server.stdout:
            m = re.search(rb"127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/snapshot", timeout=5).read()
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        time.sleep(1)
        before = rss_mib(server.pid)
        counts = {"200": 0, "503": 0, "other": 0}
        lock = threading.Lock()
        stop = time.time() + SECONDS

        def client(i):
            n = 0
            while time.time() < stop:
                width = 1000 + ((i * 7919 + n * CLIENTS * 2) % 1420) * 2
                n += 1
                try:
                    with urllib.request.urlopen(f"{base}/snapshot?width={width}", timeout=70) as r:
                        r.read()
                        code = "200"
                except urllib.error.HTTPError as e:
                    code = "503" if e.code == 503 else "other"
                    if code == "503":
                        time.sleep(0.05)
                except OSError:
                    code = "other"
                with lock:
                    counts[code] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        peak = before
        while time.time() < stop:
            peak = max(peak, rss_mib(server.pid))
            time.sleep(0.5)
        for t in threads:
            t.join()
        end = rss_mib(server.pid)
        peak = max(peak, end)
        time.sleep(10)
        idle = rss_mib(server.pid)
        return {"before": before, "peak": peak, "end": end, "idle": idle, **counts}
    finally:
        server.kill()
        server.wait()


def main():
    frames()
    results = []
    for i in range(RUNS):
        r = run()
        results.append(r)
        print(f"run {i + 1}: RSS before {r['before']:.1f} MiB, peak {r['peak']:.1f}, end of flood {r['end']:.1f}, "
              f"10 s idle {r['idle']:.1f}; snapshots 200: {r['200']}, 503: {r['503']}, other: {r['other']}",
              flush=True)
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"median of {RUNS} ({BIN}, {SECONDS:.0f} s, {CLIENTS} clients): RSS before {med['before']:.1f} MiB, "
          f"peak {med['peak']:.1f}, end of flood {med['end']:.1f}, 10 s idle {med['idle']:.1f}; "
          f"snapshots 200: {med['200']:.0f}, 503: {med['503']:.0f}")


if __name__ == "__main__":
    main()
