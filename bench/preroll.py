#!/usr/bin/env python3
"""What a pre-roll costs in memory, and what a timelapse costs on disk, at 720p.

    python3 bench/preroll.py [target/release/mjpegd] [RUNS]

Memory: mjpegd serves its 1280x720 30 fps test pattern (--capture always, no client) with no pre-roll, with
--pre-roll 10s and with --pre-roll 30s; once the pre-roll is full (its length plus 5 s), the server's VmRSS
is read from /proc and /state's pre_roll (frames, bytes) and the mean frame size are recorded. Memory per
second of pre-roll is (RSS with 30 s - RSS without) / 30. Disk: mjpegd keeps a timelapse of the same pattern
every 1 s for 60 s; the file's bytes per frame (Matroska overhead included), times 8,640 (a frame every
10 s for a day), is the disk per day. RUNS (default 3) runs; prints each and the medians. Stops by itself;
every server it starts is stopped by its pid.
"""
import json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time, urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/mjpegd"
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
BASE = [BIN, "--listen", "127.0.0.1:0", "--resolution", "1280x720", "--fps", "30", "--capture", "always"]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) / 1024


def start(extra):
    server = subprocess.Popen(BASE + extra, stdout=subprocess.PIPE,
                              env={**os.environ, "MJPEGD_LOG": "error"})
    for line in server.stdout:
        m = re.search(rb"127\.0\.0\.1:(\d+)", line)
        if m:
            return server, f"http://127.0.0.1:{int(m.group(1))}"
    server.kill()
    raise SystemExit("mjpegd printed no address")


def stop(server):
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def state(base):
    with urllib.request.urlopen(base + "/state", timeout=10) as r:
        return json.load(r)["result"]


def memory(pre_roll):
    server, base = start(["--pre-roll", f"{pre_roll}s"] if pre_roll else [])
    try:
        time.sleep(pre_roll + 5)
        rss = rss_mib(server.pid)
        s = state(base)
        sizes = []
        for _ in range(10):
            with urllib.request.urlopen(base + "/snapshot", timeout=10) as r:
                sizes.append(len(r.read()))
            time.sleep(0.1)
        p = s.get("pre_roll") or {}
        return {"rss_mib": rss, "frames": p.get("frames", 0), "bytes_mib": p.get("bytes", 0) / 2**20,
                "seconds": p.get("seconds", 0), "trimmed": p.get("trimmed_for_memory", 0),
                "frame_kib": statistics.mean(sizes) / 1024, "fps": s["source"]["captured_fps"]}
    finally:
        stop(server)


def timelapse():
    folder = tempfile.mkdtemp(prefix="mjpegd-lapse-bench-")
    server, base = start(["--timelapse", folder, "--timelapse-every", "1s"])
    try:
        time.sleep(60.5)
        frames = state(base)["timelapse"]["frames_written"]
    finally:
        stop(server)
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    shutil.rmtree(folder)
    per_frame = size / frames
    return {"frames": frames, "file_kib": size / 1024, "bytes_per_frame": per_frame,
            "mib_per_day_at_10s": per_frame * 8640 / 2**20}


results = []
for run in range(RUNS):
    r = {"none": memory(0), "10s": memory(10), "30s": memory(30), "lapse": timelapse()}
    r["mib_per_second"] = (r["30s"]["rss_mib"] - r["none"]["rss_mib"]) / 30
    print(f"run {run + 1}: " + json.dumps(r), flush=True)
    results.append(r)

med = lambda f: statistics.median(f(r) for r in results)
print(f"medians of {RUNS} runs (720p30 test pattern, frame {med(lambda r: r['none']['frame_kib']):.1f} KiB):")
for k in ["none", "10s", "30s"]:
    print(f"  pre-roll {k:>4}: RSS {med(lambda r: r[k]['rss_mib']):.1f} MiB, pre-roll holds "
          f"{med(lambda r: r[k]['frames']):.0f} frames, {med(lambda r: r[k]['bytes_mib']):.1f} MiB, "
          f"trimmed {med(lambda r: r[k]['trimmed']):.0f}")
print(f"  memory per second of pre-roll: {med(lambda r: r['mib_per_second']):.2f} MiB (RSS), "
      f"{med(lambda r: r['30s']['bytes_mib'] / max(r['30s']['seconds'], 1e-9)):.2f} MiB (frames held)")
print(f"  timelapse: {med(lambda r: r['lapse']['bytes_per_frame']) / 1024:.1f} KiB per frame in the file, "
      f"{med(lambda r: r['lapse']['mib_per_day_at_10s']):.0f} MiB per day at one frame per 10 s")
