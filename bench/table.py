"""Medians over runs of bench/compare.sh's JSON results, as a Markdown table."""
import json
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


def med(rs, get):
    vals = [v for v in (get(r) for r in rs) if v is not None]
    return statistics.median(vals) if vals else float("nan")


def cell(rs):
    return {
        "fps_min": med(rs, lambda r: r["normal"]["fps"]["min"]),
        "fps_med": med(rs, lambda r: r["normal"]["fps"]["median"]),
        "fps_total": med(rs, lambda r: r["frames_per_s"]),
        "mbs": med(rs, lambda r: r["mb_per_s"]),
        "p99": med(rs, lambda r: (r["normal"]["latency_ms"] or {}).get("p99")),
        "cpu": med(rs, lambda r: (r["server"] or {}).get("cpu_percent")),
        "rss": med(rs, lambda r: (r["server"] or {}).get("rss_mib_after")),
        "errors": sum(sum(r["errors"].values()) for r in rs),
    }


print(f"Loopback ceiling (iperf3, 2 streams): {ceiling:.0f} MB/s. Medians of {runs} runs.\n")
print("| N | server | fps per client (min / median) | delivered frames/s | MB/s | % of ceiling | latency p99 ms | server CPU % | server RSS MiB | errors |")
print("|---|---|---|---|---|---|---|---|---|---|")
for n in ns:
    cells = {}
    for server in ("ustreamer", "mjpegd"):
        c = cell(load(server, n))
        cells[server] = c
        print(f"| {n} | {server} | {c['fps_min']:.1f} / {c['fps_med']:.1f} | {c['fps_total']:.0f} | {c['mbs']:.0f} | "
              f"{100 * c['mbs'] / ceiling:.0f}% | {c['p99']:.1f} | {c['cpu']:.0f} | {c['rss']:.1f} | {c['errors']} |")
    u, m = cells["ustreamer"]["fps_total"], cells["mjpegd"]["fps_total"]
    if u == u and u > 0:
        print(f"| {n} | ratio | | mjpegd/µStreamer = {m / u:.2f}x | | | | | | |")
