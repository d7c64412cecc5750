#!/usr/bin/env python3
"""How many 720p30 cameras one machine records at once with no frame lost.

    python3 bench/recording.py [target/release/mjpegd] [DIR] [SECONDS] [N ...]

For each N (default 4 8 16 24), starts one mjpegd with N cameras that replay 1280x720 JPEGs (made once by
ffmpeg, so no encoding cost is measured) at 30 fps, each recorded into DIR (default /tmp/mjpegd-rec-bench,
deleted after each run), for SECONDS (default 20). Prints, per N: frames written and lost (from /state),
mjpegd's CPU, and the disk write rate. Loopback only; stops by itself.
"""
import json, os, shutil, subprocess, sys, time, urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/mjpegd"
DIR = sys.argv[2] if len(sys.argv) > 2 else "/tmp/mjpegd-rec-bench"
SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 20
COUNTS = [int(n) for n in sys.argv[4:]] or [4, 8, 16, 24]
PORT = 18090


def frames(folder):
    os.makedirs(folder, exist_ok=True)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30",
                    "-frames:v", "30", "-q:v", "4", os.path.join(folder, "%03d.jpg")], check=True)


def state():
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/state", timeout=5) as r:
        return json.load(r)["result"]


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def run(n, source):
    shutil.rmtree(DIR, ignore_errors=True)
    os.makedirs(DIR)
    conf = os.path.join(DIR, "cams.toml")
    with open(conf, "w") as f:
        f.write(f'listen = "127.0.0.1:{PORT}"\n')
        for i in range(n):
            f.write(f'[cameras.c{i}]\nsource = "files:{source}"\nfps = 30\ncapture = "always"\n'
                    f'record = "{DIR}/rec"\n')
    p = subprocess.Popen([BIN, "--config", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)  # warm up
        s0 = state()
        c0, t0 = cpu_seconds(p.pid), time.time()
        w0 = sum(c["recording"]["frames_written"] for c in cams(s0))
        b0 = sum(c["recording"]["bytes"] for c in cams(s0))
        time.sleep(SECONDS)
        s1 = state()
        c1, t1 = cpu_seconds(p.pid), time.time()
        w1 = sum(c["recording"]["frames_written"] for c in cams(s1))
        b1 = sum(c["recording"]["bytes"] for c in cams(s1))
        lost = sum(c["recording"]["frames_lost"] for c in cams(s1))
        secs = t1 - t0
        print(f"N={n}: {w1 - w0} frames written in {secs:.1f} s ({(w1 - w0) / secs / n:.1f} fps per camera, "
              f"expected 30), lost {lost}; mjpegd CPU {(c1 - c0) / secs * 100:.0f}%; "
              f"disk {(b1 - b0) / secs / 1e6:.1f} MB/s", flush=True)
    finally:
        p.terminate()
        p.wait(15)
        shutil.rmtree(DIR, ignore_errors=True)


def cams(s):
    # Every camera's document: the first at the top level, the others from /cams/NAME/state.
    out = []
    for c in s["cameras"]:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/cams/{c['name']}/state", timeout=5) as r:
            out.append(json.load(r)["result"])
    return out


if __name__ == "__main__":
    source = "/tmp/mjpegd-rec-bench-frames"
    if not os.path.exists(os.path.join(source, "030.jpg")):
        frames(source)
    for n in COUNTS:
        run(n, source)
