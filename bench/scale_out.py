#!/usr/bin/env python3
"""Scale-out with the HAProxy recipe: edge mjpegd instances relaying one origin, clients spread by HAProxy.

    python3 bench/scale_out.py [target/release/mjpegd] [CLIENTS ...]

Starts an origin mjpegd (a 1280x720 test pattern at 30 fps), E edge mjpegd instances (E = 1 and 2) that
each relay the origin over one connection, and HAProxy with docs/recipes/haproxy.cfg (only its addresses
changed) in front of them; E = 0 is the baseline, the clients on the origin itself, without HAProxy. Then `mjpegd bench` connects CLIENTS clients (default 200 and 1000) to HAProxy
for a 10 s window. Prints, per run: the clients' frame rate (median, p10) and latency (p50, p99) from the
load tool; per edge, its clients, the frames per second it sent (from its /state, over the window) and its
CPU; the origin's stream clients and CPU; HAProxy's CPU. Everything shares this machine's cores, the load
tool included. Loopback only; every process it starts is stopped at the end. ENV: RUNS (3), WINDOW (10),
EDGES ("0 1 2").
"""
import json, os, re, statistics, subprocess, sys, tempfile, threading, time, urllib.request

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/mjpegd")
CLIENTS = [int(n) for n in sys.argv[2:]] or [200, 1000]
RUNS = int(os.environ.get("RUNS", "3"))
WINDOW = int(os.environ.get("WINDOW", "10"))
EDGES = [int(e) for e in os.environ.get("EDGES", "0 1 2").split()]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORIGIN, HAPROXY, EDGE0 = 18200, 18201, 18210


def state(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=10) as r:
        return json.load(r)["result"]


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port):
    for _ in range(100):
        try:
            state(port)
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on port {port}")


def haproxy_cfg(edges):
    cfg = open(os.path.join(ROOT, "docs/recipes/haproxy.cfg")).read()
    cfg = cfg.replace("bind :8080", f"bind 127.0.0.1:{HAPROXY}")
    servers = "".join(f"    server edge{i + 1} 127.0.0.1:{EDGE0 + i} check inter 2s\n" for i in range(edges))
    return re.sub(r"(    server edge\d .*\n)+", servers, cfg)


def run(edges, clients, procs):
    origin = subprocess.Popen([BIN, "--listen", f"127.0.0.1:{ORIGIN}", "--resolution", "1280x720", "--fps", "30",
                               "--capture", "always"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(origin)
    wait_port(ORIGIN)
    edge_procs = []
    for i in range(edges):
        p = subprocess.Popen([BIN, "--listen", f"127.0.0.1:{EDGE0 + i}", "--source",
                              f"http://127.0.0.1:{ORIGIN}/stream", "--max-clients", "5000",
                              "--max-connections", "6000", "--max-connections-per-address", "6000"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        edge_procs.append(p)
        wait_port(EDGE0 + i)
    if edges:
        with tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False) as f:
            f.write(haproxy_cfg(edges))
        ha = subprocess.Popen(["haproxy", "-db", "-f", f.name], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        procs.append(ha)
        time.sleep(1)
    # Without edges, the clients go to the origin itself (the baseline).
    target = HAPROXY if edges else ORIGIN
    warmup = 3
    bench = subprocess.Popen([BIN, "bench", f"http://127.0.0.1:{target}/stream", "--clients", str(clients),
                              "--duration", f"{WINDOW}s", "--warmup", f"{warmup}s", "--json", "--loopback-only"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    procs.append(bench)
    # The load tool ramps up, warms up, then measures: sample the servers over the middle of its window.
    served = [EDGE0 + i for i in range(edges)] or [ORIGIN]
    for _ in range(600):
        if sum(len(state(port)["clients"]) for port in served) >= clients:
            break
        time.sleep(0.1)
    time.sleep(warmup + 1)
    span = max(WINDOW - 3, 2)
    pids = {"origin": origin.pid, **{f"edge{i + 1}": p.pid for i, p in enumerate(edge_procs)}}
    if edges:
        pids["haproxy"] = ha.pid
    c0 = {k: cpu_seconds(v) for k, v in pids.items()}
    s0 = [state(EDGE0 + i) for i in range(edges)]
    t0 = time.time()
    time.sleep(span)
    c1 = {k: cpu_seconds(v) for k, v in pids.items()}
    s1 = [state(EDGE0 + i) for i in range(edges)]
    origin_clients = len(state(ORIGIN)["clients"])
    secs = time.time() - t0
    out, _ = bench.communicate(timeout=WINDOW + 600)
    report = json.loads(out.strip().splitlines()[-1])
    sent = lambda s: sum(c["frames_sent"] for c in s["clients"])
    per_edge = [{"clients": len(s1[i]["clients"]), "fps": (sent(s1[i]) - sent(s0[i])) / secs,
                 "cpu": (c1[f"edge{i + 1}"] - c0[f"edge{i + 1}"]) / secs * 100} for i in range(edges)]
    return {
        "median": report["normal"]["fps"]["median"], "p10": report["normal"]["fps"]["p10"],
        "p50": (report["normal"]["latency_ms"] or {}).get("p50"), "p99": (report["normal"]["latency_ms"] or {}).get("p99"),
        "edges": per_edge, "origin_clients": origin_clients,
        "origin_cpu": (c1["origin"] - c0["origin"]) / secs * 100,
        "haproxy_cpu": (c1["haproxy"] - c0["haproxy"]) / secs * 100 if edges else 0.0,
        "connected": report["connected"],
    }


def stop(procs):
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    procs.clear()


def main():
    print("| edges | clients | fps median / p10 | latency p50 / p99 ms | per edge: clients, frames/s, CPU | origin: clients, CPU | HAProxy CPU |")
    print("|---|---|---|---|---|---|---|")
    for clients in CLIENTS:
        for edges in EDGES:
            rs = []
            for _ in range(RUNS):
                procs = []
                try:
                    rs.append(run(edges, clients, procs))
                finally:
                    stop(procs)
                time.sleep(1)
            med = lambda f: statistics.median(f(r) for r in rs)
            per_edge = "(clients on the origin)" if edges == 0 else "; ".join(
                f"{med(lambda r: r['edges'][i]['clients']):.0f}, {med(lambda r: r['edges'][i]['fps']):,.0f}, "
                f"{med(lambda r: r['edges'][i]['cpu']):.0f}%" for i in range(edges))
            ha = f"{med(lambda r: r['haproxy_cpu']):.0f}%" if edges else "-"
            print(f"| {edges} | {clients} | {med(lambda r: r['median']):.1f} / {med(lambda r: r['p10']):.1f} | "
                  f"{med(lambda r: r['p50'] or 0):.0f} / {med(lambda r: r['p99'] or 0):.0f} | {per_edge} | "
                  f"{med(lambda r: r['origin_clients']):.0f}, {med(lambda r: r['origin_cpu']):.0f}% | "
                  f"{ha} |", flush=True)


if __name__ == "__main__":
    main()
