#!/usr/bin/env python3
"""Replay of a long recording: time to the first frame with ?start= in the middle of a 1-hour segment, and
mjpegd's CPU while 10 clients replay at once.

    python3 bench/replay.py [target/release/mjpegd] [target/release/examples/mkv_synth] [DIR] [RUNS]

Makes 30 distinct 1280x720 JPEGs with ffmpeg, writes them as a finished 1-hour, 30 fps segment of camera
`default` into DIR (default /tmp/mjpegd-replay-bench, deleted at the end) with the core's writer
(`cargo build --release -p mjpegd-core --example mkv_synth`), and starts mjpegd recording into DIR (a tiny
1 fps pattern, so that the segment is one of its camera's). Then:
- RUNS times (default 9): one client asks for `/recordings/FILE/stream?start=1800` and the time until its
  first whole part has arrived is measured; the same for start=0 and for the last second (start=3599); then
  the same segment written again as if still being written (no Cues, unknown sizes: the clusters are scanned);
- 10 clients replay from start=1800 at speed 1 for 20 s; mjpegd's CPU over that window (from /proc), and the
  frames they received.
Prints medians. The file is in the page cache after writing it (a warm cache). Loopback only; stops by itself.
"""
import os, shutil, socket, statistics, subprocess, sys, threading, time, urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/mjpegd"
SYNTH = sys.argv[2] if len(sys.argv) > 2 else "target/release/examples/mkv_synth"
DIR = sys.argv[3] if len(sys.argv) > 3 else "/tmp/mjpegd-replay-bench"
RUNS = int(sys.argv[4]) if len(sys.argv) > 4 else 9
PORT = 18093
START_US = 1_700_000_000_000_000
NAME = "default-20231114T221320.000Z.mkv"  # START_US as the recorder names it


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def first_part(path):
    """Seconds from connecting to having the first whole part of `path`'s stream."""
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", PORT))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nUser-Agent: bench\r\n\r\n".encode())
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit(f"{path}: closed before a frame: {buf[:200]!r}")
        buf += chunk
        at = buf.find(b"Content-Length: ")
        if at >= 0:
            end = buf.find(b"\r\n\r\n", at)
            if end >= 0:
                n = int(buf[at + 16:buf.find(b"\r\n", at)])
                if len(buf) >= end + 4 + n:
                    took = time.perf_counter() - t0
                    s.close()
                    return took


def replay_client(path, seconds, counts, i):
    s = socket.create_connection(("127.0.0.1", PORT))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nUser-Agent: bench\r\n\r\n".encode())
    s.settimeout(5)
    end = time.time() + seconds
    parts = 0
    tail = b""
    while time.time() < end:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        # Boundaries in this chunk, including one that began in the previous chunk's last bytes.
        parts += (tail + chunk).count(b"--boundarydonotcross") - tail.count(b"--boundarydonotcross")
        tail = (tail + chunk)[-32:]
    s.close()
    counts[i] = parts


def main():
    shutil.rmtree(DIR, ignore_errors=True)
    os.makedirs(DIR)
    jpegs = os.path.join(DIR, "jpegs")
    os.makedirs(jpegs)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30",
                    "-frames:v", "30", "-q:v", "6", os.path.join(jpegs, "%03d.jpg")], check=True)
    files = sorted(os.path.join(jpegs, f) for f in os.listdir(jpegs))
    t = time.perf_counter()
    subprocess.run([SYNTH, os.path.join(DIR, NAME), str(START_US), "3600", "30", *files], check=True)
    size = os.path.getsize(os.path.join(DIR, NAME))
    print(f"segment: 1 h at 30 fps, 1280x720, {size / 1e9:.2f} GB, written in {time.perf_counter() - t:.1f} s")
    server = subprocess.Popen([BIN, "--listen", f"127.0.0.1:{PORT}", "--fps", "1", "--resolution", "160x120",
                               "--record", DIR, "--max-clients", "100"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT}/state", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        for start in ["0", "1800", "3599"]:
            times = [first_part(f"/recordings/{NAME}/stream?start={start}") for _ in range(RUNS)]
            print(f"time to first frame, start={start}: median {statistics.median(times) * 1000:.1f} ms "
                  f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}, {RUNS} runs)")
        # The same segment still being written: no Cues and unknown sizes, so the clusters are scanned.
        os.remove(os.path.join(DIR, NAME))
        subprocess.run([SYNTH, "--unfinished", os.path.join(DIR, NAME), str(START_US), "3600", "30", *files],
                       check=True)
        for start in ["1800", "3599"]:
            times = [first_part(f"/recordings/{NAME}/stream?start={start}") for _ in range(RUNS)]
            print(f"being written (no Cues, scanned), start={start}: median {statistics.median(times) * 1000:.1f} ms "
                  f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}, {RUNS} runs)")
        seconds = 20
        counts = [0] * 10
        threads = [threading.Thread(target=replay_client,
                                    args=(f"/recordings/{NAME}/stream?start=1800", seconds, counts, i))
                   for i in range(10)]
        c0, t0 = cpu_seconds(server.pid), time.time()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        cpu = (cpu_seconds(server.pid) - c0) / (time.time() - t0) * 100
        print(f"10 concurrent replays at speed 1 for {seconds} s: mjpegd {cpu:.1f}% of one core, "
              f"frames received per client {min(counts)}-{max(counts)} ({min(counts) / seconds:.1f}-"
              f"{max(counts) / seconds:.1f} fps)")
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(DIR, ignore_errors=True)


main()
