#!/usr/bin/env python3
"""Side-by-side table from smtp-bench.sh RESULT lines.

usage: table.py [FILE ...]   (default: stdin)

Pairs mailsrv-relay and postfix-relay runs per (size, conc) and prints a
Markdown table of medians: end-to-end msg/s, CPU ms per message and peak
PSS for each, with mailsrv/Postfix ratios (throughput: higher is better;
CPU and memory: mailsrv's share of Postfix's). Runs where messages went
missing or smtp-source failed are counted in the "bad" column and left
out of the medians.
"""
import statistics
import sys


def parse(line):
    return dict(tok.split("=", 1) for tok in line.split()[1:] if "=" in tok)


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def size_name(b):
    b = int(b)
    return f"{b // 1024} KiB" if b % 1024 == 0 else f"{b} B"


def main():
    lines = []
    for fn in sys.argv[1:] or ["-"]:
        lines += (sys.stdin if fn == "-" else open(fn)).readlines()
    runs = {}
    for line in lines:
        if not line.startswith("RESULT"):
            continue
        d = parse(line)
        side = d["target"].split("-")[0]
        key = (int(d["size"]), int(d["conc"]))
        r = runs.setdefault(key, {}).setdefault(side, {"e2e": [], "cpu": [], "pss": [], "bad": 0, "n": 0})
        r["n"] += 1
        n = d.get("n", "0")
        if d.get("src_rc") != "0" or d.get("delivered") != f"{n}/{n}":
            r["bad"] += 1
            continue
        r["e2e"].append(num(d.get("e2e_mps")))
        r["cpu"].append(num(d.get("tgt_cpu_ms_per_msg")))
        pss = num(d.get("tgt_peak_pss_kb"))
        r["pss"].append(pss / 1024 if pss else None)

    def f(v, prec=0):
        return "NA" if v is None else f"{v:.{prec}f}"

    def ratio(a, b, prec=2):
        return "NA" if a is None or not b else f"{a / b:.{prec}f}"

    print("| size | senders | e2e msg/s mailsrv | Postfix | ratio | CPU ms/msg mailsrv | Postfix | share | peak PSS MiB mailsrv | Postfix | share | runs (bad) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (size, conc) in sorted(runs):
        m = runs[(size, conc)].get("mailsrv", {"e2e": [], "cpu": [], "pss": [], "bad": 0, "n": 0})
        p = runs[(size, conc)].get("postfix", {"e2e": [], "cpu": [], "pss": [], "bad": 0, "n": 0})
        me, pe = median(m["e2e"]), median(p["e2e"])
        mc, pc = median(m["cpu"]), median(p["cpu"])
        mp, pp = median(m["pss"]), median(p["pss"])
        print(f"| {size_name(size)} | {conc} | {f(me, 1)} | {f(pe, 1)} | **{ratio(me, pe)}×** | "
              f"{f(mc, 2)} | {f(pc, 2)} | {ratio(mc, pc)} | {f(mp)} | {f(pp)} | {ratio(mp, pp)} | "
              f"{m['n']}/{p['n']} ({m['bad']}/{p['bad']}) |")


if __name__ == "__main__":
    main()
