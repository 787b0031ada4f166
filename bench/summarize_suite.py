"""Compact tables of a benchmark-suite JSON (``python -m fastsoftmax.bench --json F``).

    python bench/summarize_suite.py fastsoftmax-bench.json

Prints, per dtype and thread setting, one Markdown table of fastsoftmax's median time
(the allocating variant; ``out=`` where the table says so) and its speed-up over each
peer, then the speed-up of all threads over one thread for every (dtype, shape, op).

    python bench/summarize_suite.py --before earlier.json later.json

compares two runs of the same command instead (say, before and after a change, each
run in its own environment): fastsoftmax's median in each, their ratio, and PyTorch's
median in each run (when it ran), which shows how far the two runs' machines agreed.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Any

# (dtype, threads, shape, op) -> {impl: result row}
Suite = dict[tuple[str, int, tuple[int, ...], str], dict[str, dict[str, Any]]]

PEERS = ("numpy", "scipy", "torch", "jax", "tensorflow")
# Bytes per element of the suite's dtypes (--dtype)
ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}


def fmt_time(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} us"


def load(path: str) -> Suite:
    """(dtype, threads, shape, op) -> {impl: result row} of a suite JSON."""
    with open(path) as f:
        data = json.load(f)
    by: Suite = defaultdict(dict)
    for r in data["results"]:
        by[(r["dtype"], r["threads"], tuple(r["shape"]), r["op"])][r["impl"]] = r
    return by


def compare(before: Suite, after: Suite) -> None:
    """fastsoftmax (allocating) before and after, with PyTorch's median in each run."""
    for dtype, threads in sorted({(k[0], k[1]) for k in after}):
        print(f"\n**{dtype}, {threads} thread{'s' if threads > 1 else ''}** (allocating calls)\n")
        print(
            "| shape | op | before | after | after/before | torch, before | torch, after "
            "| torch/after |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for key in sorted(after, key=lambda k: (k[2][0] * k[2][1], k[2], k[3])):
            if key[:2] != (dtype, threads) or key not in before:
                continue
            b, a = before[key], after[key]
            if "fastsoftmax" not in a or "fastsoftmax" not in b:
                continue
            tb, ta = b["fastsoftmax"]["time_s"], a["fastsoftmax"]["time_s"]
            pb, pa = b.get("torch"), a.get("torch")
            cells = [fmt_time(tb), fmt_time(ta), f"{ta / tb:.2f}"]
            cells += [fmt_time(pb["time_s"]) if pb else "-", fmt_time(pa["time_s"]) if pa else "-"]
            cells.append(f"{pa['time_s'] / ta:.2f}x" if pa else "-")
            print(f"| {'x'.join(map(str, key[2]))} | {key[3]} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json")
    p.add_argument("--before", help="an earlier run of the same command, to compare with")
    args = p.parse_args()
    by = load(args.json)
    if args.before:
        compare(load(args.before), by)
        return
    settings = sorted({(k[0], k[1]) for k in by})
    for dtype, threads in settings:
        print(f"\n**{dtype}, {threads} thread{'s' if threads > 1 else ''}**: fastsoftmax's median")
        print("and its speed-up over each peer (the peer's median / ours; careful NumPy against")
        print("`out=`, the others against the allocating call; - : not run)\n")
        print("| shape | op | fastsoftmax | " + " | ".join(PEERS) + " |")
        print("|---|---|---:|" + "---:|" * len(PEERS))
        for (dt, th, shape, op), impls in sorted(
            by.items(), key=lambda kv: (kv[0][2][0] * kv[0][2][1], kv[0][2], kv[0][3])
        ):
            if (dt, th) != (dtype, threads):
                continue
            ours = impls.get("fastsoftmax")
            if ours is None:
                continue
            cells = []
            for peer in PEERS:
                r = impls.get(peer)
                cells.append(f"{r['speedup']:.2f}x" if r and r.get("speedup") else "-")
            shape_s = "x".join(map(str, shape))
            print(f"| {shape_s} | {op} | {fmt_time(ours['time_s'])} | " + " | ".join(cells) + " |")
    print("\n**All threads over one thread** (fastsoftmax's own medians; `out=` variant where")
    print("there is one, so that page faults of a fresh result do not enter)\n")
    counts = sorted({k[1] for k in by})
    if len(counts) < 2:
        return
    one, many = counts[0], counts[-1]
    ops = sorted({k[3] for k in by})
    print("| dtype | shape | MB | " + " | ".join(ops) + " |")
    print("|---|---|---:|" + "---:|" * len(ops))
    for dtype in sorted({k[0] for k in by}):
        for shape in sorted({k[2] for k in by if k[0] == dtype}, key=lambda s: s[0] * s[1]):
            cells = []
            for op in ops:
                a, b = by.get((dtype, one, shape, op), {}), by.get((dtype, many, shape, op), {})
                impl = "fastsoftmax out=" if "fastsoftmax out=" in a else "fastsoftmax"
                if impl in a and impl in b:
                    cells.append(f"{a[impl]['time_s'] / b[impl]['time_s']:.2f}x")
                else:
                    cells.append("-")
            size = shape[0] * shape[1] * ITEMSIZE[dtype] / 2**20
            print(
                f"| {dtype} | {'x'.join(map(str, shape))} | {size:.1f} | "
                + " | ".join(cells)
                + " |"
            )


if __name__ == "__main__":
    main()
