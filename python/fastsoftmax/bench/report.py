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


def fmt_eps(v: float | None) -> str:
    """An error in units of eps: two decimals under 10, whole numbers up to 99999."""
    if v is None or not math.isfinite(v):
        return "-" if v is None else str(v)
    if v < 10:
        return f"{v:.2f}"
    return f"{v:.0f}" if v < 1e5 else f"{v:.1e}"
