#!/usr/bin/env python3
"""What polling a snapshot-only camera costs, with and without HTTP Digest.

    python3 bench/snapshot_poll.py [target/release/mjpegd] [SECONDS] [RUNS] [FPS ...]

Starts Debian's apache2 (as the relay tests do: its own config in a temp folder, loopback, stopped by its
pid) serving one 1280x720 JPEG (made once by ffmpeg) twice: open, and behind mod_auth_digest (MD5, nonces
living 300 s). For each FPS (default 10 30 60) and each of the two URLs, runs mjpegd polling it
(`--capture always`, no viewer) for SECONDS (default 15), RUNS times (default 3), and prints the medians
of: the stills apache served per second, how many of them were 401s, and mjpegd's CPU (user + system, %
of one core). Loopback only; stops by itself.
"""
import hashlib, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/mjpegd"
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 15
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
RATES = [float(f) for f in sys.argv[4:]] or [10, 30, 60]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def apache(folder):
    www = os.path.join(folder, "www")
    os.makedirs(os.path.join(www, "open"))
    os.makedirs(os.path.join(www, "digest"))
    still = os.path.join(www, "open", "snap.jpg")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=1280x720",
                    "-frames:v", "1", "-q:v", "4", still], check=True)
    shutil.copy(still, os.path.join(www, "digest", "snap.jpg"))
    os.chmod(folder, 0o755)
    ha1 = hashlib.md5(b"cam:cam:bench-pass").hexdigest()
    open(os.path.join(folder, "users"), "w").write(f"cam:cam:{ha1}\n")
    port = free_port()
    user = "User nobody\nGroup nogroup\n" if os.geteuid() == 0 else ""
    conf = os.path.join(folder, "apache.conf")
    open(conf, "w").write(f"""ServerRoot /usr/lib/apache2
ServerName 127.0.0.1
LoadModule mpm_event_module modules/mod_mpm_event.so
LoadModule authn_core_module modules/mod_authn_core.so
LoadModule authn_file_module modules/mod_authn_file.so
LoadModule authz_core_module modules/mod_authz_core.so
LoadModule authz_user_module modules/mod_authz_user.so
LoadModule auth_digest_module modules/mod_auth_digest.so
LoadModule mime_module modules/mod_mime.so
{user}Listen 127.0.0.1:{port}
PidFile {folder}/apache.pid
Mutex file:{folder}
ErrorLog {folder}/error.log
LogFormat "%>s" status
CustomLog {folder}/access.log status
DocumentRoot {www}
TypesConfig /dev/null
AddType image/jpeg .jpg
KeepAlive On
MaxKeepAliveRequests 0
<Location /digest>
    AuthType Digest
    AuthName "cam"
    AuthDigestProvider file
    AuthUserFile {folder}/users
    AuthDigestNonceLifetime 300
    Require valid-user
</Location>
""")
    p = subprocess.Popen(["/usr/sbin/apache2", "-f", conf, "-DFOREGROUND"], stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise SystemExit("apache did not start")


def log_counts(folder):
    lines = open(os.path.join(folder, "access.log")).read().split()
    return len(lines), lines.count("401")


def run(folder, url, fps):
    port = free_port()
    p = subprocess.Popen([BIN, "--listen", f"127.0.0.1:{port}", "--source", url, "--fps", str(fps),
                          "--capture", "always"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)  # warm up
        n0, u0 = log_counts(folder)
        c0, t0 = cpu_seconds(p.pid), time.time()
        time.sleep(SECONDS)
        n1, u1 = log_counts(folder)
        c1, t1 = cpu_seconds(p.pid), time.time()
        secs = t1 - t0
        return (n1 - n0) / secs, u1 - u0, (c1 - c0) / secs * 100
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)


def main():
    folder = tempfile.mkdtemp(prefix="mjpegd-poll-bench-")
    server, port = apache(folder)
    try:
        print(f"{BIN}, {SECONDS:.0f} s per run, medians of {RUNS} runs; a 1280x720 still "
              f"({os.path.getsize(os.path.join(folder, 'www/open/snap.jpg'))} bytes) from apache on loopback")
        print("| fps asked | auth | stills/s served | 401s per run | mjpegd CPU |")
        print("|---|---|---|---|---|")
        for fps in RATES:
            for auth, url in [("none", f"http://127.0.0.1:{port}/open/snap.jpg"),
                              ("Digest MD5", f"http://cam:bench-pass@127.0.0.1:{port}/digest/snap.jpg")]:
                results = [run(folder, url, fps) for _ in range(RUNS)]
                rate = statistics.median(r[0] for r in results)
                refused = statistics.median(r[1] for r in results)
                cpu = statistics.median(r[2] for r in results)
                print(f"| {fps:g} | {auth} | {rate:.1f} | {refused:g} | {cpu:.1f}% |")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


main()
