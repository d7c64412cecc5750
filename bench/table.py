"""Medians over runs of bench/compare.sh's JSON results, as a Markdown table."""
import json
import os
import statistics
import sys

out, ceiling, ns, runs = sys.argv[1], float(sys.argv[2]), sys.argv[3].split(), int(sys.argv[4])


def load(server, n):
    rs = []
    for run in range(1, runs + 1):
        try:
            with open(f"{out}/{server}-{n}-{run}.json") as f:
                rs.append(json.load(f))
        except (OSError, ValueError):
            pass
    return rs


def extra_path(name):
    try:
        with open(f"{out}/{name}.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def med(rs, get):
    vals = [v for v in (get(r) for r in rs) if v is not None]
    return statistics.median(vals) if vals else float("nan")


def cell(rs):
    return {
        "fps_min": med(rs, lambda r: r["normal"]["fps"]["min"]),
        "fps_med": med(rs, lambda r: r["normal"]["fps"]["median"]),
        "fps_p10": med(rs, lambda r: r["normal"]["fps"].get("p10")),
        "fps_total": med(rs, lambda r: r["frames_per_s"]),
        "mbs": med(rs, lambda r: r["mb_per_s"]),
        "p99": med(rs, lambda r: (r["normal"]["latency_ms"] or {}).get("p99")),
        "cpu": med(rs, lambda r: (r["server"] or {}).get("cpu_percent")),
        # CPU-seconds per delivered GB, from each run's own CPU and bytes (then the median of those).
        "cpu_gb": med(rs, lambda r: (r["server"] or {}).get("cpu_percent", 0) / 100 / (r["mb_per_s"] / 1000)
                      if r["server"] and r["mb_per_s"] > 0 else None),
        "rss": med(rs, lambda r: (r["server"] or {}).get("rss_mib_after")),
        "errors": sum(sum(r["errors"].values()) for r in rs),
    }


print(f"Loopback ceiling (iperf3, 2 streams): {ceiling:.0f} MB/s. Medians of {runs} runs.\n")
HEAD = ("| N | server | fps per client (min / p10 / median) | delivered frames/s | MB/s | % of ceiling | latency p99 ms "
        "| server CPU % | CPU-s per GB | server RSS MiB | errors |")


def row(n, server, c):
    return (f"| {n} | {server} | {c['fps_min']:.1f} / {c['fps_p10']:.1f} / {c['fps_med']:.1f} | {c['fps_total']:.0f} | "
            f"{c['mbs']:.0f} | {100 * c['mbs'] / ceiling:.0f}% | {c['p99']:.1f} | {c['cpu']:.0f} | {c['cpu_gb']:.2f} | "
            f"{c['rss']:.1f} | {c['errors']} |")


LABELS = {"ustreamer": "ustreamer", "mjpegd": "mjpegd", "nginx-tls-ustreamer": "nginx TLS -> ustreamer",
          "mjpegd-tls": "mjpegd HTTPS", "nginx-tls-mjpegd": "nginx TLS -> mjpegd",
          # only when the run had SOURCES="camera push"
          "mjpegd-push": "mjpegd, pushed by ffmpeg"}
print(HEAD)
print("|---|---|---|---|---|---|---|---|---|---|---|")
for n in ns:
    cells = {}
    for server in LABELS:
        rs = load(server, n)
        if not rs:
            continue
        c = cell(rs)
        cells[server] = c
        print(row(n, LABELS[server], c))
    for peer, ours, what in (("ustreamer", "mjpegd", "mjpegd/µStreamer"),
                             ("nginx-tls-ustreamer", "mjpegd-tls", "HTTPS: mjpegd/(nginx TLS -> µStreamer)"),
                             ("nginx-tls-mjpegd", "mjpegd-tls", "HTTPS: mjpegd/(nginx TLS -> mjpegd)")):
        if peer not in cells or ours not in cells:
            continue
        u, m = cells[peer]["fps_total"], cells[ours]["fps_total"]
        if u == u and u > 0:
            print(f"| {n} | ratio | | {what} = {m / u:.2f}x | | | | | | | |")
    if "mjpegd-push" in cells and "mjpegd" in cells:
        p, m = cells["mjpegd-push"]["fps_total"], cells["mjpegd"]["fps_total"]
        if m == m and m > 0:
            print(f"| {n} | ratio | | pushed/camera = {p / m:.2f}x | | | | | | | |")

# mjpegd alone at growing N: the largest N whose median client still gets >= 29 fps.
search_runs = int(os.environ.get("SEARCH_RUNS", "1"))
largest = None
for n in os.environ.get("SEARCH_NS", "").split():
    rs = [r for r in (extra_path(f"search-mjpegd-{n}-{k}") for k in range(1, search_runs + 1)) if r]
    if not rs:
        break
    c = cell(rs)
    print(row(n, f"mjpegd alone ({len(rs)} run{'s' if len(rs) > 1 else ''})", c))
    if c["fps_med"] >= 29:
        largest = n
if largest:
    print(f"\nLargest N with every client's median at >= 29 fps (mjpegd alone): {largest}")
largest = None
for n in os.environ.get("SEARCH_TLS_NS", "").split():
    rs = [r for r in (extra_path(f"search-mjpegd-tls-{n}-{k}") for k in range(1, search_runs + 1)) if r]
    if not rs:
        break
    c = cell(rs)
    print(row(n, f"mjpegd HTTPS alone ({len(rs)} run{'s' if len(rs) > 1 else ''})", c))
    if c["fps_med"] >= 29:
        largest = n
if largest:
    print(f"\nLargest N with every client's median at >= 29 fps over HTTPS (mjpegd alone): {largest}")


def extra(name):
    return extra_path(f"extra-{name}")


rows = []
a = extra("all-100")
if a:
    n = a["normal"]
    rows.append(f"| 100 clients, `?delivery=all` | fps min {n['fps']['min']:.1f}, median {n['fps']['median']:.1f}; "
                f"sequence gaps {n['gaps']}; frames not whole JPEG {n['not_jpeg']}; errors {sum(a['errors'].values())} |")
for name, label in (("slow-100", "mjpegd"), ("ustreamer-slow-100", "µStreamer")):
    s = extra(name)
    if s:
        n, sl = s["normal"], s["slow"]
        rows.append(f"| {label}: 90 normal + 10 slow clients (200 kB/s, 16 KiB receive buffer) | normal fps p10 "
                    f"{n['fps']['p10']:.1f}, median {n['fps']['median']:.1f}; slow clients' oldest frame "
                    f"{sl['max_frame_age_ms']:.0f} ms, slow fps median {sl['fps']['median']:.1f} |")
k = extra("10k-fps1")
if k:
    n = k["normal"]
    rows.append(f"| 10,000 clients at `?fps=1`, 30 s | connected {k['connected']}; fps min {n['fps']['min']:.2f}, "
                f"median {n['fps']['median']:.2f}; errors {sum(k['errors'].values())}; server RSS "
                f"{(k['server'] or {}).get('rss_mib_after', float('nan')):.0f} MiB, CPU {(k['server'] or {}).get('cpu_percent', float('nan')):.0f}% |")
if rows:
    print("\n| scenario | result |\n|---|---|")
    print("\n".join(rows))

# Memory per client: RSS growth from N=1 to the largest N, per added client.
ns_int = sorted(int(n) for n in ns)
if len(ns_int) >= 2:
    print()
    for server in ("ustreamer", "mjpegd"):
        lo, hi = load(server, ns_int[0]), load(server, ns_int[-1])
        r_lo = med(lo, lambda r: (r["server"] or {}).get("rss_mib_after"))
        r_hi = med(hi, lambda r: (r["server"] or {}).get("rss_mib_after"))
        per = (r_hi - r_lo) * 1024 / (ns_int[-1] - ns_int[0])
        print(f"RSS growth per client, {server}: {per:.1f} KiB (N={ns_int[0]}: {r_lo:.1f} MiB, N={ns_int[-1]}: {r_hi:.1f} MiB)")
