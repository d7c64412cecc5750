#!/usr/bin/env python3
"""Measures what mjpegd does with hostile sources (issue 9's attack run, items 1, 8 and 10), on loopback.

    python3 bench/hostile_sources.py [target/release/mjpegd]

Each scenario starts its own upstream (a thread here) and its own mjpegd, and stops both; the whole run
takes about a minute. It prints one line per scenario with the figures the README's security table quotes.
"""
import os, socket, subprocess, sys, threading, time, re, struct

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/mjpegd"


def jpeg_of(size):
    """A real JPEG of `size` from ffmpeg (installed by scripts/setup.sh)."""
    return subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc=size={size}:rate=1",
         "-frames:v", "1", "-f", "mjpeg", "-"], check=True, capture_output=True).stdout


def claiming(jpeg, w, h):
    i = jpeg.index(b"\xff\xc0")
    return jpeg[:i + 5] + struct.pack(">HH", h, w) + jpeg[i + 9:]


def jpeg_size(j):
    i = j.index(b"\xff\xc0")
    h, w = struct.unpack(">HH", j[i + 5:i + 9])
    return w, h


class Upstream:
    """mode: stream (frames at fps), silent (one frame then nothing), close (one frame then close)."""

    def __init__(self, frames, mode="stream", fps=20):
        self.frames, self.mode, self.fps, self.stop = frames, mode, fps, False
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.url = "http://127.0.0.1:%d/stream" % self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            c.recv(4096)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=b\r\n\r\n--b\r\n")
            i = 0
            while not self.stop:
                j = self.frames[i % len(self.frames)]
                c.sendall(b"Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(j) + j + b"\r\n--b\r\n")
                i += 1
                if self.mode == "close":
                    break
                if self.mode == "silent":
                    while not self.stop:
                        time.sleep(0.1)
                time.sleep(1 / self.fps)
        except OSError:
            pass
        c.close()


class Mjpegd:
    def __init__(self, *args, limit_as=None):
        cmd = [BIN, "--listen", "127.0.0.1:0", "--resolution", "640x480", *args]
        if limit_as:
            cmd = ["prlimit", f"--as={limit_as}", "--"] + cmd
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "MJPEGD_LOG": "warn"})
        for line in self.p.stdout:
            m = re.search(rb"page:\s+http://([\d.]+):(\d+)", line)
            if m:
                self.addr = (m.group(1).decode(), int(m.group(2)))
                break
        threading.Thread(target=lambda: [None for _ in self.p.stdout], daemon=True).start()

    def rss_mib(self):
        try:
            for l in open(f"/proc/{self.p.pid}/status"):
                if l.startswith("VmRSS:"):
                    return int(l.split()[1]) / 1024
        except OSError:
            return 0.0
        return 0.0

    def cpu_s(self):
        f = open(f"/proc/{self.p.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()


class Client:
    """A stream reader: parts as (arrival time, headers, jpeg)."""

    def __init__(self, addr, path="/stream"):
        self.s = socket.create_connection(addr)
        self.s.settimeout(15)
        self.s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.buf = b""
        self.read_until(b"\r\n\r\n")
        self.read_until(b"\r\n")  # first boundary

    def read_until(self, sep):
        while sep not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        head, self.buf = self.buf.split(sep, 1)
        return head

    def part(self):
        head = self.read_until(b"\r\n\r\n").decode()
        h = dict(l.split(": ", 1) for l in head.split("\r\n") if ": " in l)
        n = int(h["Content-Length"])
        while len(self.buf) < n + 2:
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        body, self.buf = self.buf[:n], self.buf[n:]
        self.read_until(b"\r\n")  # end of part
        self.read_until(b"\r\n")  # boundary
        return time.time(), h, body


def huge_pictures():
    good = [jpeg_of("320x240")]
    up = Upstream([claiming(good[0], 65535, 65535)], "stream", 20)
    m = Mjpegd("--source", up.url, "--capture", "always", limit_as=4_000_000_000)
    t0, c = time.time(), Client(m.addr)
    first = c.part()
    rss, parts, biggest = 0.0, 0, 0
    cpu0, tc = m.cpu_s(), time.time()
    while time.time() - t0 < 10:
        _, _, b = c.part()
        parts, biggest, rss = parts + 1, max(biggest, len(b)), max(rss, m.rss_mib())
    cpu = (m.cpu_s() - cpu0) / (time.time() - tc) * 100
    up.frames = good
    tf = time.time()
    while True:
        _, _, b = c.part()
        if b == good[0]:
            break
    recovered = time.time() - tf
    alive = m.p.poll() is None
    m.stop(); up.stop = True
    print(f"huge picture (65535x65535 SOF, relay at 20 fps, 4 GB address-space limit): first part "
          f"{first[0] - t0:.2f} s after connect ({jpeg_size(first[2])[0]}x{jpeg_size(first[2])[1]}), "
          f"{parts} no-signal parts in 10 s, largest {biggest / 1024:.1f} KiB, peak RSS {rss:.1f} MiB, "
          f"CPU {cpu:.1f}%; upstream fixed: real frames {recovered:.2f} s later on the same client; "
          f"alive: {alive}")


def silent_upstream():
    up = Upstream([jpeg_of("640x480")], "silent")
    m = Mjpegd("--source", up.url, "--capture", "always")
    c = Client(m.addr)
    t_real, _, _ = c.part()
    while True:
        t, _, b = c.part()
        if b != up.frames[0]:
            break
    gap = t - t_real
    m.stop(); up.stop = True
    print(f"connected but silent upstream: no-signal {gap:.2f} s after its last frame (read timeout 10 s)")


def closing_upstream():
    j = jpeg_of("640x480")
    up = Upstream([j], "close")
    m = Mjpegd("--source", up.url, "--capture", "always")
    c = Client(m.addr)
    t0, real = time.time(), 0
    while time.time() - t0 < 10:
        _, _, b = c.part()
        real += b == j
    m.stop(); up.stop = True
    print(f"upstream closing after each frame: {real} real frames in 10 s ({real / 10:.1f}/s)")


def stale_on_demand():
    m = Mjpegd("--capture", "on-demand", "--linger", "1s")
    c = Client(m.addr)
    c.part(); c.part()
    c.s.close()
    time.sleep(6)  # the source closes after the linger; its last frame grows old
    asked = time.time()
    c = Client(m.addr)
    _, h, _ = c.part()
    age = asked - float(h["X-Timestamp"])
    m.stop()
    print(f"stream opened 5 s after an on-demand source went idle: first frame captured {-age * 1000:.0f} ms "
          f"after the request" if age < 0 else f"... first frame {age:.2f} s older than the request")


if __name__ == "__main__":
    for scenario in (huge_pictures, silent_upstream, closing_upstream, stale_on_demand):
        scenario()
