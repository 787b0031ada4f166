"""The PNG: fastsoftmax's speed-up against each peer per shape, and its GB/s against array size.

One row of panels per (dtype, thread count); one panel per operation (the
speed-up, log scale, one line per peer, 1 = as fast as fastsoftmax) and a last
panel with the GB/s of fastsoftmax's operations against the input's size in
bytes, under the measured memory-copy bandwidth. Needs matplotlib (the Agg
backend: no display).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .accuracy import numpy_dtype
from .peers import optional_module

PEER_COLORS = {
    "numpy": "tab:blue",
    "numpy-naive": "tab:cyan",
    "scipy": "tab:green",
    "torch": "tab:red",
    "jax": "tab:purple",
    "tensorflow": "tab:orange",
}


def available() -> bool:
    return optional_module("matplotlib") is not None


def plot(doc: dict[str, Any], path: str | Path) -> None:
    """Write the figure of a document (report.build_document) to path (PNG)."""
    matplotlib: Any = optional_module("matplotlib")
    if matplotlib is None:
        raise ImportError("matplotlib is not installed (pip install 'fastsoftmax[bench]')")
    matplotlib.use("Agg")
    plt: Any = optional_module("matplotlib.pyplot")
    ticker: Any = optional_module("matplotlib.ticker")
    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    some = ticker.FuncFormatter(lambda v, _: f"{v:g}" if _leading_digit(v) in (2, 5) else "")
    megabytes = ticker.FuncFormatter(lambda v, _: f"{v / 1e6:g} MB")

    results = doc["results"]
    settings = doc["settings"]
    ops = [op for op in settings["ops"] if any(r["op"] == op for r in results)]
    combos = list(dict.fromkeys((r["dtype"], r["threads"]) for r in results))
    shapes = [tuple(s) for s in settings["shapes"]]
    labels = ["x".join(map(str, s)) for s in shapes]
    ncols = len(ops) + 1
    fig, axes = plt.subplots(
        len(combos),
        ncols,
        figsize=(3.2 * ncols, 3.0 * len(combos) + 0.8),
        squeeze=False,
        constrained_layout=True,
    )
    copy_gbps = doc["copy_bandwidth"]["GBps"]
    op_colors = {op: f"C{i}" for i, op in enumerate(ops)}
    for row, (dtype, n) in enumerate(combos):
        here = [r for r in results if r["dtype"] == dtype and r["threads"] == n]
        tag = f"{dtype}, {n} thread{'s' if n != 1 else ''}"
        for col, op in enumerate(ops):
            ax = axes[row][col]
            peers = list(dict.fromkeys(r["impl"] for r in here if r["op"] == op and r["speedup"]))
            for peer in peers:
                y = [_speedup(here, op, s, peer) for s in shapes]
                ax.plot(labels, y, "o-", color=PEER_COLORS.get(peer), label=peer, markersize=4)
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(some)
            ax.set_title(f"{op}\n{tag}", fontsize=9)
            ax.tick_params(axis="x", labelrotation=60, labelsize=7)
            ax.tick_params(axis="y", which="both", labelsize=6)
            ax.grid(True, which="both", axis="y", alpha=0.3)
            if col == 0:
                ax.set_ylabel("speed-up of fastsoftmax (x)", fontsize=8)
            if peers:
                ax.legend(fontsize=6)
        ax = axes[row][-1]
        for op in ops:
            pts = sorted(
                (math.prod(r["shape"]) * numpy_dtype(dtype).itemsize, r["GBps"])
                for r in here
                if r["op"] == op and r["impl"] == _fs_variant(here, op)
            )
            if pts:
                ax.plot(*zip(*pts), "o-", color=op_colors[op], label=op, markersize=4)
        ax.axhline(copy_gbps, color="black", linestyle="--", linewidth=1, label="copy (1 thread)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(some)
        ax.xaxis.set_major_formatter(megabytes)
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("input size (bytes)", fontsize=8)
        ax.set_ylabel("GB/s (read + written)", fontsize=8)
        ax.set_title(f"fastsoftmax GB/s\n{tag}", fontsize=9)
        ax.tick_params(which="both", labelsize=6)
        ax.legend(fontsize=6)
    m = doc["machine"]
    fig.suptitle(
        f"fastsoftmax {doc['versions'].get('fastsoftmax', '')} ({m['simd_target']}) on "
        f"{m['cpu_model']}, {m['usable_cpus']} CPUs; copy {copy_gbps:.1f} GB/s",
        fontsize=10,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _leading_digit(v: float) -> int:
    return round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0


def _speedup(rows: list[dict[str, Any]], op: str, shape: tuple[int, ...], impl: str) -> float:
    for r in rows:
        if r["op"] == op and tuple(r["shape"]) == shape and r["impl"] == impl:
            return float(r["speedup"] or math.nan)
    return math.nan


def _fs_variant(rows: list[dict[str, Any]], op: str) -> str:
    """fastsoftmax's out= variant where it was timed (the kernel alone), else its plain call."""
    names = {r["impl"] for r in rows if r["op"] == op}
    return "fastsoftmax out=" if "fastsoftmax out=" in names else "fastsoftmax"
