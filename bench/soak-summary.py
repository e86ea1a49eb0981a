#!/usr/bin/env python3
"""Summarize a soak.sh CSV: per column, the average of the first and the
last quarter of the samples (after the first 10 %, the warm-up) and the
least-squares slope per hour. A leak is a slope well above the noise."""
import csv
import sys


def slope(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    d = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / d if d else 0.0


rows = list(csv.DictReader(open(sys.argv[1])))
rows = rows[len(rows) // 10:]
if len(rows) < 4:
    sys.exit("too few samples")
print("| metric | first quarter avg | last quarter avg | slope per hour |")
print("|---|---|---|---|")
q = len(rows) // 4
for col in ["pss_kb", "rss_kb", "heap_inuse_mb", "goroutines", "queued", "recycled", "spool_kb"]:
    if col not in rows[0]:
        continue
    pts = [(float(r["t_s"]), float(r[col])) for r in rows if r[col] not in ("", "NA")]
    if len(pts) < 4:
        continue
    first = [y for _, y in pts[:q]]
    last = [y for _, y in pts[-q:]]
    s = slope([x for x, _ in pts], [y for _, y in pts]) * 3600
    print(f"| {col} | {sum(first) / len(first):.1f} | {sum(last) / len(last):.1f} | {s:+.1f} |")
