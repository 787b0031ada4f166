"""Compact tables of a benchmark-suite JSON (``python -m fastsoftmax.bench --json F``).

    python bench/summarize_suite.py fastsoftmax-bench.json

Prints, per dtype and thread setting, one Markdown table of fastsoftmax's median time
(the allocating variant; ``out=`` where the table says so) and its speed-up over each
peer, then the speed-up of all threads over one thread for every (dtype, shape, op).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

PEERS = ("numpy", "scipy", "torch", "jax", "tensorflow")


def fmt_time(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} us"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json")
    args = p.parse_args()
    with open(args.json) as f:
        data = json.load(f)
    rows = data["results"]
    by = defaultdict(dict)  # (dtype, threads, shape, op) -> {impl: row}
    for r in rows:
        by[(r["dtype"], r["threads"], tuple(r["shape"]), r["op"])][r["impl"]] = r
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
    threads = sorted({k[1] for k in by})
    if len(threads) < 2:
        return
    one, many = threads[0], threads[-1]
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
            size = shape[0] * shape[1] * (4 if dtype == "float32" else 8) / 2**20
            print(
                f"| {dtype} | {'x'.join(map(str, shape))} | {size:.1f} | "
                + " | ".join(cells)
                + " |"
            )


if __name__ == "__main__":
    main()
