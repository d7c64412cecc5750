#!/usr/bin/env python3
"""Push-to-viewer latency of a pushed camera on loopback.

Starts target/release/mjpegd with a pushed camera, pushes 1280x720 JPEGs (ffmpeg's testsrc2) at 30 fps for
DURATION seconds, as a chunked multipart stream and as one POST per frame on a keep-alive connection, while
one viewer reads /cams/door/stream. Each frame's X-Timestamp is set when the frame arrives at mjpegd; the
latency is the viewer's receive time minus it. Prints p50/p99 in ms per protocol, and mjpegd's CPU time per
pushed frame.

    python3 bench/push_latency.py [DURATION]
"""
import os, socket, subprocess, sys, tempfile, threading, time, statistics

KEY = "bench-key-0123456789"
DURATION = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
FPS = 30


def frames(dir):
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                    "-frames:v", "30", "-q:v", "5", os.path.join(dir, "f%03d.jpg")], check=True)
    return [open(os.path.join(dir, f"f{i:03d}.jpg"), "rb").read() for i in range(1, 31)]


def start(dir):
    conf = os.path.join(dir, "c.toml")
    open(conf, "w").write(f'[cameras.door]\nsource = "push"\npush-key = "{KEY}"\nresolution = "1280x720"\n')
    p = subprocess.Popen(["target/release/mjpegd", "--listen", "127.0.0.1:0", "--config", conf],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "MJPEGD_LOG": "warn"})
    for line in p.stdout:
        line = line.decode()
        if "http://" in line:
            addr = line.split("http://", 1)[1].split("/", 1)[0].strip()
            host, port = addr.rsplit(":", 1)
            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
            return p, (host, int(port))
    raise SystemExit("mjpegd did not start")


def viewer(addr, out, stop):
    s = socket.create_connection(addr)
    s.sendall(b"GET /cams/door/stream HTTP/1.1\r\nHost: b\r\n\r\n")
    f = s.makefile("rb")
    while f.readline() not in (b"\r\n", b""):
        pass
    first = True
    while not stop.is_set():
        headers = {}
        while True:
            line = f.readline()
            if not line:
                return
            if line == b"\r\n":
                if headers:
                    break
                continue
            if line.startswith(b"--"):
                continue
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        body = f.read(int(headers["content-length"]))
        now = time.time()
        if first:  # the newest frame when the viewer came, pushed before it
            first = False
        elif len(body) > 20000:  # a pushed frame, not "no signal"
            out.append(now - float(headers["x-timestamp"]))


def push_multipart(addr, jpegs, n):
    s = socket.create_connection(addr)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(f"POST /cams/door/push?key={KEY} HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    t0 = time.monotonic()
    for i in range(n):
        j = jpegs[i % len(jpegs)]
        part = f"--f\r\nContent-Type: image/jpeg\r\nContent-Length: {len(j)}\r\n\r\n".encode() + j + b"\r\n"
        s.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        time.sleep(max(0, t0 + (i + 1) / FPS - time.monotonic()))
    s.close()


def push_per_request(addr, jpegs, n):
    s = socket.create_connection(addr)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    t0 = time.monotonic()
    for i in range(n):
        j = jpegs[i % len(jpegs)]
        s.sendall(f"POST /cams/door/push?key={KEY} HTTP/1.1\r\nHost: b\r\nContent-Type: image/jpeg\r\n"
                  f"Content-Length: {len(j)}\r\n\r\n".encode() + j)
        while f.readline() != b"\r\n":
            pass
        time.sleep(max(0, t0 + (i + 1) / FPS - time.monotonic()))
    s.close()


def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    with tempfile.TemporaryDirectory() as dir:
        jpegs = frames(dir)
        p, addr = start(dir)
        try:
            n = int(DURATION * FPS)
            for name, push in [("multipart", push_multipart), ("per-request POST", push_per_request)]:
                out, stop = [], threading.Event()
                t = threading.Thread(target=viewer, args=(addr, out, stop), daemon=True)
                t.start()
                time.sleep(0.5)
                c0 = cpu(p.pid)
                push(addr, jpegs, n)
                c1 = cpu(p.pid)
                time.sleep(0.5)
                stop.set()
                out.sort()
                ms = [x * 1000 for x in out]
                p50 = statistics.median(ms)
                p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
                print(f"{name}: {len(ms)} frames of ~{len(jpegs[0]) // 1024} KiB at 720p{FPS}, 1 viewer: "
                      f"p50 {p50:.2f} ms, p99 {p99:.2f} ms; mjpegd CPU {1e3 * (c1 - c0) / n:.3f} ms per pushed frame")
                time.sleep(1.5)
        finally:
            p.terminate()
            p.wait()


main()
