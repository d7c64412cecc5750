#!/usr/bin/env python3
"""Push-to-viewer latency of a pushed camera on loopback, and mjpegd's CPU per pushed frame.

Starts target/release/mjpegd with a pushed camera and pushes 1280x720 JPEGs (ffmpeg's testsrc2) at 30 fps
with each protocol in turn: a chunked multipart stream, one POST per frame on a keep-alive connection, and a
WebSocket whose binary messages are the frames (as an ESP32 sketch sends them). Each frame's X-Timestamp is
set when the frame arrives at mjpegd; the latency is the viewer's receive time minus it.
- 1 viewer: a Python viewer of /cams/door/stream; mjpegd's CPU time (from /proc/PID/stat) over the push,
  divided by the frames pushed.
- N viewers (--viewers 1,1000): `mjpegd bench -n N` on /cams/door/stream while the pusher pushes; its
  latency p50/p99 over all viewers, and the server's CPU over its window per pushed frame (fan-out
  included).
With --camera, the same frames also come from a fake V4L2 camera (target/release/fakecam, MJPEG passed
through, 30 fps) in place of a pusher: the fan-out figures of a pushed source next to a camera's.
Every combination runs RUNS times (sources in turn within a run); the medians are printed at the end.

    python3 bench/push_latency.py [--duration 10] [--viewers 1,1000] [--runs 3] [--camera]
"""
import argparse, base64, json, os, resource, socket, statistics, subprocess, sys, tempfile, threading, time

KEY = "bench-key-0123456789"
FPS = 30
MJPEGD = "target/release/mjpegd"
FAKECAM = "target/release/fakecam"


def frames(dir):
    os.makedirs(os.path.join(dir, "frames"))
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                    "-frames:v", "30", "-q:v", "5", os.path.join(dir, "frames", "f%03d.jpg")], check=True)
    return [open(os.path.join(dir, "frames", f"f{i:03d}.jpg"), "rb").read() for i in range(1, 31)]


def start(dir, camera=None):
    """mjpegd with the pushed camera `door`, or with `camera` (a V4L2 device) as `door`."""
    conf = os.path.join(dir, "c.toml")
    if camera:
        table = f'device = "{camera}"\nformat = "mjpeg"\ncapture = "always"\nfps = 30\n'
    else:
        table = f'source = "push"\npush-key = "{KEY}"\n'
    open(conf, "w").write(f'[cameras.door]\n{table}resolution = "1280x720"\n')
    p = subprocess.Popen([MJPEGD, "--listen", "127.0.0.1:0", "--config", conf, "--max-clients", "20000"],
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


def paced(jpegs, stop, send):
    """Calls send(jpeg) at FPS until stop is set; returns how many were sent."""
    t0 = time.monotonic()
    i = 0
    while not stop.is_set():
        send(jpegs[i % len(jpegs)])
        i += 1
        time.sleep(max(0, t0 + i / FPS - time.monotonic()))
    return i


def connect(addr):
    s = socket.create_connection(addr)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def push_multipart(addr, jpegs, stop):
    s = connect(addr)
    s.sendall(f"POST /cams/door/push?key={KEY} HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n".encode())

    def send(j):
        part = f"--f\r\nContent-Type: image/jpeg\r\nContent-Length: {len(j)}\r\n\r\n".encode() + j + b"\r\n"
        s.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    n = paced(jpegs, stop, send)
    s.close()
    return n


def push_jpeg_post(addr, jpegs, stop):
    s = connect(addr)
    f = s.makefile("rb")

    def send(j):
        s.sendall(f"POST /cams/door/push?key={KEY} HTTP/1.1\r\nHost: b\r\nContent-Type: image/jpeg\r\n"
                  f"Content-Length: {len(j)}\r\n\r\n".encode() + j)
        while f.readline() != b"\r\n":
            pass
    n = paced(jpegs, stop, send)
    s.close()
    return n


def push_websocket(addr, jpegs, stop):
    """A minimal RFC 6455 client: the handshake, then one masked binary message per frame (mask key 0, so
    the payload goes as it is: the client's cost is not what is measured)."""
    s = connect(addr)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /cams/door/push?key={KEY} HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    f = s.makefile("rb")
    status = f.readline()
    if b" 101 " not in status:
        raise SystemExit(f"no upgrade: {status!r}")
    while f.readline() != b"\r\n":
        pass

    def send(j):
        n = len(j)
        head = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
                                if n < 65536 else bytes([0x80 | 127]) + n.to_bytes(8, "big"))
        s.sendall(head + b"\0\0\0\0" + j)
    n = paced(jpegs, stop, send)
    s.sendall(b"\x88\x80\0\0\0\0")  # close
    s.close()
    return n


def camera_frames(addr, jpegs, stop):
    """The fake camera delivers on its own: wait, and count the frames of its rate."""
    t0 = time.monotonic()
    stop.wait()
    return max(1, round((time.monotonic() - t0) * FPS))


PUSHERS = [("multipart", push_multipart), ("jpeg-post", push_jpeg_post), ("websocket", push_websocket)]


class FakeCam:
    """target/release/fakecam serving the frames at 30 fps on a FUSE file, unmounted when done."""

    def __init__(self, dir):
        self.mount = os.path.join(dir, "cam")
        os.makedirs(self.mount, exist_ok=True)
        self.p = subprocess.Popen([FAKECAM, "--mount", self.mount, "--width", "1280", "--height", "720", "--fps",
                                   "30", "--format", "mjpeg", "--frames", os.path.join(dir, "frames")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.device = os.path.join(self.mount, "video0")
        for _ in range(50):
            if os.path.exists(self.device):
                return
            time.sleep(0.1)
        self.close()
        raise SystemExit("fakecam did not start")

    def close(self):
        self.p.terminate()
        self.p.wait()
        subprocess.run(["fusermount3", "-u", self.mount], stderr=subprocess.DEVNULL)


def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_viewer(p, addr, jpegs, push, duration):
    out, stop_view, stop_push = [], threading.Event(), threading.Event()
    t = threading.Thread(target=viewer, args=(addr, out, stop_view), daemon=True)
    t.start()
    time.sleep(0.5)
    c0 = cpu(p.pid)
    timer = threading.Timer(duration, stop_push.set)
    timer.start()
    n = push(addr, jpegs, stop_push)
    c1 = cpu(p.pid)
    time.sleep(0.5)
    stop_view.set()
    ms = sorted(x * 1000 for x in out)
    return {"p50": statistics.median(ms), "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
            "cpu_ms_per_frame": 1e3 * (c1 - c0) / n, "frames": len(ms)}


def many_viewers(p, addr, jpegs, push, duration, n):
    stop = threading.Event()
    pushed = {}
    t = threading.Thread(target=lambda: pushed.setdefault("n", push(addr, jpegs, stop)), daemon=True)
    t.start()
    time.sleep(1.0)
    url = f"http://{addr[0]}:{addr[1]}/cams/door/stream"
    r = subprocess.run([MJPEGD, "bench", url, "-n", str(n), "--duration", f"{duration}s", "--warmup", "3s",
                        "--connect-batch", "500", "--pid", str(p.pid), "--loopback-only", "--json"],
                       capture_output=True, check=True)
    stop.set()
    t.join()
    d = json.loads(r.stdout)
    lat = d["normal"]["latency_ms"]
    server = d["server"] or {}
    # (the server's CPU over the bench window, per frame pushed in it: the fan-out to N viewers included)
    per_frame = server.get("cpu_percent", 0) / 100 / FPS * 1e3
    return {"p50": lat["p50"], "p99": lat["p99"], "cpu_ms_per_frame": per_frame,
            "fps_median": d["normal"]["fps"]["median"], "errors": d["errors"], "gaps": d["normal"]["gaps"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--viewers", default="1")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--camera", action="store_true")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    counts = [int(x) for x in args.viewers.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as dir:
        jpegs = frames(dir)
        cam = FakeCam(dir) if args.camera else None
        sources = PUSHERS + ([("camera", camera_frames)] if cam else [])
        for run in range(args.runs):
            for n in counts:
                for name, push in sources:
                    # A fresh server for each measurement: nothing left over from the previous one.
                    p, addr = start(dir, cam.device if name == "camera" else None)
                    try:
                        if n == 1:
                            r = one_viewer(p, addr, jpegs, push, args.duration)
                        else:
                            r = many_viewers(p, addr, jpegs, push, args.duration, n)
                    finally:
                        p.terminate()
                        p.wait()
                    results.setdefault((name, n), []).append(r)
                    print(f"run {run + 1}: {name}, {n} viewer(s): " + json.dumps(r), flush=True)
        if cam:
            cam.close()
    print(f"\nmedians of {args.runs} run(s), 720p{FPS} (~{len(jpegs[0]) // 1024} KiB a frame), loopback:")
    for (name, n), rs in results.items():
        med = lambda k: statistics.median(r[k] for r in rs)
        fps = f", viewers' median fps {med('fps_median'):.1f}" if n > 1 else ""
        print(f"{name:10} {n:5} viewer(s): latency p50 {med('p50'):.2f} ms, p99 {med('p99'):.2f} ms; "
              f"mjpegd CPU {med('cpu_ms_per_frame'):.3f} ms per frame{fps}")


main()
