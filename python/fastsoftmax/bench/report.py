"""The machine's description, the JSON document and the text table."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import textwrap
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .._config import simd_target, simd_targets
from .accuracy import ERROR_MEASURES, ERROR_UNITS
from .suite import all_threads

SCHEMA = "fastsoftmax.bench/1"
# Distributions whose versions the file records, when installed.
DISTRIBUTIONS = (
    "fastsoftmax",
    "numpy",
    "scipy",
    "torch",
    "jax",
    "jaxlib",
    "tensorflow",
    "tensorflow-cpu",
    "matplotlib",
    "tqdm",
)
ENVIRONMENT_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "FASTSOFTMAX_NUM_THREADS",
    "XLA_FLAGS",
    "TF_ENABLE_ONEDNN_OPTS",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("model name", "Model", "Hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpu_model": _cpu_model(),
        "architecture": platform.machine(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "logical_cpus": os.cpu_count(),
        "usable_cpus": all_threads(),
        "memory_bytes": _memory_bytes(),
        "simd_target": simd_target(),
        "simd_targets": simd_targets(),
        "FASTSOFTMAX_SIMD": os.environ.get("FASTSOFTMAX_SIMD", ""),
        "environment": {v: os.environ[v] for v in ENVIRONMENT_VARIABLES if v in os.environ},
    }


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in DISTRIBUTIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def build_document(run: dict[str, Any], argv: Sequence[str]) -> dict[str, Any]:
    """Everything the run measured, with what it was measured on."""
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": list(argv),
        "machine": machine(),
        "versions": versions(),
        "error_measures": ERROR_MEASURES,
        "error_units": ERROR_UNITS,
        **run,
    }


def _finite(obj: Any) -> Any:
    """The object with NaN and infinities as None (JSON has no such numbers)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj


def write_json(doc: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(_finite(doc), indent=1, allow_nan=False) + "\n")


def fmt_time(t: float) -> str:
    if t < 1e-3:
        return f"{t * 1e6:.1f} us"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.3f} s"


def summary(doc: dict[str, Any]) -> str:
    """The run in a few lines, printed before the table.

    What ran (fastsoftmax's version and SIMD target, threads, dtypes, cases, time),
    the range of fastsoftmax's speed-ups over each peer (and where it is least),
    and each library's worst max error (the largest in units of eps; NaN first).
    """
    m, results = doc["machine"], doc["results"]
    threads = sorted({r["threads"] for r in results}) or doc["settings"]["threads"]
    dtypes = list(dict.fromkeys(r["dtype"] for r in results)) or doc["settings"]["dtypes"]
    cases = {(r["dtype"], tuple(r["shape"]), r["op"], r["threads"]) for r in results}
    version = doc["peers"].get("fastsoftmax", {}).get("version", "")
    ran = f" in {doc['elapsed_s']:.1f} s" if "elapsed_s" in doc else ""
    plural = "thread" if threads == [1] else "threads"
    first = (
        f"fastsoftmax {version}, SIMD target {m['simd_target']}, "
        f"{' and '.join(map(str, threads))} {plural} (of {m['usable_cpus']} CPUs), "
        f"{', '.join(dtypes)}: {len(cases)} cases{ran}"
    )

    def where(r: dict[str, Any]) -> str:
        """A row's case, with its dtype and threads where the run had several."""
        text = f"{r['op']} {'x'.join(map(str, r['shape']))}"
        if len(dtypes) > 1:
            text += f" {r['dtype']}"
        if len(threads) > 1:
            text += f" {r['threads']} thread" + ("" if r["threads"] == 1 else "s")
        return text

    # (fastsoftmax fed framework arrays, --framework-arrays, is left to the table)
    peer_rows = [r for r in results if not r["peer"].startswith("fastsoftmax[")]
    speedups: dict[str, list[dict[str, Any]]] = {}  # fastsoftmax's, over each peer
    for r in peer_rows:
        if r.get("speedup"):
            speedups.setdefault(r["peer"], []).append(r)
    labelled: list[tuple[str, str]] = []  # (label, text) lines, the texts aligned
    for peer, rows in speedups.items():
        rows = sorted(rows, key=lambda r: float(r["speedup"]))
        least, most = fmt_speedup(rows[0]["speedup"]), fmt_speedup(rows[-1]["speedup"])
        median = fmt_speedup(float(np.median([r["speedup"] for r in rows])))
        text = f"{least} to {most} (median {median}); least at {where(rows[0])}"
        labelled.append((f"speed-up over {peer}:", text))

    def size(r: dict[str, Any]) -> float:
        err = float(r["max_error_eps"])
        return math.inf if math.isnan(err) else err

    worst: dict[str, dict[str, Any]] = {}  # each library's largest error, in units of eps
    for r in peer_rows:
        if r.get("max_error_eps") is None:
            continue
        if r["peer"] not in worst or size(r) > size(worst[r["peer"]]):
            worst[r["peer"]] = r
    name_width = max(map(len, worst), default=0)
    for i, (peer, r) in enumerate(worst.items()):
        eps = fmt_eps(r["max_error_eps"])
        text = f"{peer:<{name_width}} {r['max_error']:.1e} = {eps} eps ({where(r)})"
        labelled.append(("worst max error:" if i == 0 else "", text))
    width = max((len(label) for label, _ in labelled), default=0) + 1
    lines = [textwrap.fill(first, 100, subsequent_indent="  ")]
    for label, text in labelled:
        indent = " " * width
        lines.append(
            textwrap.fill(text, 100, initial_indent=label.ljust(width), subsequent_indent=indent)
        )
    return "\n".join(lines)


def header(doc: dict[str, Any]) -> str:
    """What ran where, and how to read the table."""
    m, s, copy = doc["machine"], doc["settings"], doc["copy_bandwidth"]
    peers = doc["peers"]
    libraries = {p.split("-")[0]: v["version"] for p, v in peers.items()}  # numpy-naive: numpy
    by_doc: dict[str, list[str]] = {}
    for p, v in peers.items():
        by_doc.setdefault(v["threads"]["doc"], []).append(p)
    errors = [f"{op}: {text}" for op, text in doc["error_measures"].items() if op in s["ops"]]
    via: dict[str, list[str]] = {}  # "float32 (float16)" -> implementations computing in it
    for r in doc["results"]:
        if r.get("via"):
            names = via.setdefault(f"{r['via']} ({r['dtype']})", [])
            names += [] if r["impl"] in names else [r["impl"]]
    paragraphs = [
        f"{m['cpu_model']} ({m['architecture']}), {m['usable_cpus']} usable CPUs; "
        + ", ".join(f"{lib} {version}" for lib, version in libraries.items()),
        (
            f"memory copy (np.copyto, one thread, {copy['array_bytes'] / 2**20:.0f} MiB arrays): "
            f"{copy['GBps']:.1f} GB/s (start of the run {copy['GBps_start']:.1f}, "
            f"end {copy['GBps_end']:.1f})"
        ),
        "threads: " + "; ".join(f"{', '.join(ps)}: {d}" for d, ps in by_doc.items()),
        (
            f"medians of {s['rounds']} interleaved rounds (samples of >= {s['min_time']} s). "
            "GB/s: bytes read + written / median; 'of copy': GB/s / copy GB/s (above 100% "
            "when the arrays fit in cache)."
        ),
        (
            "fs speed-up: the peer's median / fastsoftmax's. 'fastsoftmax out=' writes into a "
            "preallocated array (cross_entropy_grad: inplace_grad=True) and is compared with the "
            "peers that do the same (careful numpy); 'fastsoftmax' allocates its result, as the "
            "other peers do."
        ),
        "max error against a float64 reference (longdouble for float64 inputs): "
        + "; ".join(errors)
        + ". "
        + doc.get("error_units", ERROR_UNITS)
        + ".",
    ]
    if via:
        paragraphs.append(
            "computed in another dtype (inputs converted and the result cast back within "
            "each call): " + "; ".join(f"{d}: {', '.join(names)}" for d, names in via.items())
        )
    return "\n".join(textwrap.fill(p, 100, subsequent_indent="  ") for p in paragraphs)


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """One section per (dtype, thread count), one line per implementation."""
    head = (
        f"{'shape':>12}  {'op':<20} {'implementation':<17} {'median':>10} {'GB/s':>7} "
        f"{'of copy':>7} {'fs speed-up':>11} {'max error':>9} {'err/eps':>8}"
    )
    sections: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in results:
        sections.setdefault((r["dtype"], r["threads"]), []).append(r)
    out: list[str] = []
    for (dtype, n), rows in sections.items():
        plural = "thread" if n == 1 else "threads"
        tag = " (all)" if rows[0]["all_threads"] else ""
        out += ["", f"== {dtype}, {n} {plural}{tag} ==", head, "-" * len(head)]
        previous: tuple[Any, ...] = ()
        for r in rows:
            key = (tuple(r["shape"]), r["op"])
            shape = "x".join(map(str, r["shape"])) if key != previous else ""
            op = r["op"] if key != previous else ""
            previous = key
            speedup = f"{r['speedup']:.2f}x" if r.get("speedup") else "-"
            err = r["max_error"]
            out.append(
                f"{shape:>12}  {op:<20} {r['impl']:<17} {fmt_time(r['time_s']):>10} "
                f"{r['GBps']:>7.1f} {r['copy_fraction']:>7.0%} {speedup:>11} "
                f"{err:>9.1e} {fmt_eps(r.get('max_error_eps')):>8}"
            )
    return "\n".join(out)


def fmt_speedup(v: float) -> str:
    """A ratio with three significant digits up to 1000 (2.20x, 15.8x, 123x)."""
    return f"{v:.2f}x" if v < 10 else f"{v:.1f}x" if v < 100 else f"{v:.0f}x"


def fmt_eps(v: float | None) -> str:
    """An error in units of eps: two decimals under 10, whole numbers up to 99999."""
    if v is None or not math.isfinite(v):
        return "-" if v is None else str(v)
    if v < 10:
        return f"{v:.2f}"
    return f"{v:.0f}" if v < 1e5 else f"{v:.1e}"
