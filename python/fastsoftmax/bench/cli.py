"""Command lines: ``python -m fastsoftmax.bench`` (the suite) and ``python -m fastsoftmax``.

The suite compares fastsoftmax with every peer that is installed, on float32
and float64 (float16 and bfloat16 on request: ``--dtype``), one thread and all
threads, and writes a JSON file and a PNG. The main job (``python -m
fastsoftmax``) is the same run with a short default: careful NumPy only,
float32, one thread, no files unless asked for. It keeps every default shape
and operation (42 cases) and the 7 interleaved rounds, but takes shorter
samples and a smaller copy than the suite (MAIN_JOB_MIN_TIME,
MAIN_JOB_COPY_BYTES): about 12 s instead of 29 s on the project's 2-vCPU
machine.

Both print a short summary (:func:`.report.summary`), then the table, then
what was measured and how (:func:`.report.header`); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from . import plot, report, suite
from .accuracy import DTYPES
from .peers import OPS, PEER_ALIASES, PEERS

DEFAULT_SHAPES: tuple[tuple[int, int], ...] = (
    (4096, 10),
    (4096, 128),
    (1024, 1000),
    (256, 32000),
    (32, 128256),
    (8192, 1024),
    (1, 1000),
)
QUICK_SHAPES: tuple[tuple[int, int], ...] = ((4096, 10), (128, 1000), (16, 32000))
# The operations of issue 4; log_softmax_backward on request (--ops all).
DEFAULT_OPS = tuple(op for op in OPS if op != "log_softmax_backward")
# The default dtypes of the suite (--quick and the main job: float32 alone); all: DTYPES.
DEFAULT_DTYPES = ("float32", "float64")
# The main job's timing: as many interleaved rounds as the suite (7), but samples of >= 5 ms
# instead of 20 ms, and the copy bandwidth on 64 MiB arrays (twice the L3 cache here) instead
# of 256 MiB (0.6 to 1.3 s at each end of the run, mostly first touches). Speed-ups in cache stay
# within 6% of the suite's settings; out of cache both settings move by up to a quarter from
# run to run (bench/RESULTS.md, "The main job").
MAIN_JOB_MIN_TIME = 0.005
MAIN_JOB_COPY_BYTES = 64 << 20


def _parse_shape(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad shape {text!r}; use ROWSxCLASSES, e.g. 512x50257"
        ) from None
    if rows < 1 or cols < 1:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: sizes must be positive")
    return rows, cols


def _choices(
    allowed: Sequence[str], aliases: dict[str, str] | None = None
) -> Callable[[str], list[str]]:
    """A parser of comma-separated names from allowed (or all)."""

    def parse(text: str) -> list[str]:
        if text == "all":
            return list(allowed)
        out = []
        for item in text.split(","):
            name = (aliases or {}).get(item.strip(), item.strip())
            if name not in allowed:
                raise argparse.ArgumentTypeError(
                    f"unknown {name!r}; choose from {', '.join(allowed)} (comma-separated) or all"
                )
            out.append(name)
        return list(dict.fromkeys(out))

    return parse


def _parse_threads(text: str) -> list[int]:
    n_all = suite.all_threads()
    out = []
    for item in text.split(","):
        item = item.strip()
        try:
            n = n_all if item == "all" else int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad thread count {item!r}; e.g. 1,all") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"bad thread count {item!r}: must be >= 1")
        out.append(n)
    return list(dict.fromkeys(out))


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument(
        "--shape",
        type=_parse_shape,
        action="append",
        default=[],
        help="a ROWSxCLASSES shape added to the default ones, e.g. 512x50257 (repeatable)",
    )
    p.add_argument(
        "--no-default-shapes", action="store_true", help="only the shapes given with --shape"
    )
    p.add_argument(
        "--ops",
        type=_choices(OPS),
        help=f"comma-separated, from {', '.join(OPS)}, or all (default: all but "
        "log_softmax_backward)",
    )
    p.add_argument(
        "--dtype",
        type=_choices(list(DTYPES)),
        help=f"comma-separated, from {', '.join(DTYPES)}, or all (default: "
        f"{','.join(DEFAULT_DTYPES)}; --quick: float32). fastsoftmax, PyTorch, JAX and "
        "TensorFlow take float16 and bfloat16 (ml_dtypes) arrays as they are; NumPy and SciPy "
        "compute them in float32 and cast the result back",
    )
    p.add_argument(
        "--threads",
        type=_parse_threads,
        help="comma-separated thread counts; 'all' is every CPU this process may use",
    )
    p.add_argument(
        "--peers",
        type=_choices(list(PEERS), PEER_ALIASES),
        help=f"comma-separated, from {', '.join(PEERS)}, or all; missing ones are skipped",
    )
    p.add_argument(
        "--framework-arrays",
        action="store_true",
        help="also time fastsoftmax called with the torch and JAX peers' own arrays "
        "(rows 'fastsoftmax[torch]', 'fastsoftmax[jax]'), as their users would call it",
    )
    p.add_argument("--rounds", type=int, help="interleaved rounds per measurement")
    p.add_argument("--min-time", type=float, help="seconds per timed sample")
    p.add_argument("--quick", action="store_true", help="a short run: few shapes, few rounds")
    p.add_argument("--json", help="write every figure and the machine's description here")
    p.add_argument("--png", help="write the plot here (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    return p


def run(argv: Sequence[str] | None, *, main_job: bool) -> int:
    if main_job:
        prog = "python -m fastsoftmax"
        description = "fastsoftmax against careful NumPy (the short default of the suite)"
    else:
        prog = "python -m fastsoftmax.bench"
        description = "fastsoftmax against NumPy, SciPy, PyTorch, JAX and TensorFlow"
    args = parser(prog, description).parse_args(argv)
    n_all = suite.all_threads()
    shapes = [] if args.no_default_shapes else list(QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
    shapes = list(dict.fromkeys(shapes + args.shape))
    if not shapes:
        print(f"{prog}: no shapes (--no-default-shapes needs --shape)", file=sys.stderr)
        return 2
    rounds, min_time, copy_bytes = (3, 0.002, 64 << 20) if args.quick else (7, 0.02, 256 << 20)
    if main_job:  # short: careful NumPy, float32, one thread, no files, short samples
        dtypes, threads, peers = ["float32"], [1], ["numpy"]
        json_path, png_path = args.json, args.png
        if not args.quick:
            min_time, copy_bytes = MAIN_JOB_MIN_TIME, MAIN_JOB_COPY_BYTES
    else:
        dtypes = ["float32"] if args.quick else list(DEFAULT_DTYPES)
        threads, peers = list(dict.fromkeys([1, n_all])), list(PEERS)
        json_path = args.json or "fastsoftmax-bench.json"
        png_path = args.png or "fastsoftmax-bench.png"
    settings = suite.Settings(
        shapes=shapes,
        dtypes=args.dtype or dtypes,
        ops=args.ops or list(DEFAULT_OPS),
        threads=args.threads or threads,
        peers=args.peers or peers,
        rounds=args.rounds or rounds,
        min_time=args.min_time if args.min_time is not None else min_time,
        copy_bytes=copy_bytes,
        quick=args.quick,
        progress=not args.no_progress,
        framework_arrays=args.framework_arrays,
    )

    start = time.perf_counter()
    result = suite.run(settings)
    doc = report.build_document(result, [prog, *(argv if argv is not None else sys.argv[1:])])
    doc["elapsed_s"] = time.perf_counter() - start
    print(report.summary(doc))
    print(report.format_table(doc["results"]))
    print()
    print(report.header(doc))
    if json_path:
        report.write_json(doc, json_path)
        print(f"wrote {json_path}")
    if png_path:
        if plot.available():
            plot.plot(doc, png_path)
            print(f"wrote {png_path}")
        else:
            print(
                f"note: matplotlib is not installed (pip install 'fastsoftmax[bench]'): no {png_path}"
            )
    if main_job:
        print(
            "\nSciPy, PyTorch, JAX and TensorFlow (when installed), float64 (float16, bfloat16: "
            "--dtype), all threads, a JSON file and a plot: python -m fastsoftmax.bench --help"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastsoftmax.bench``: the whole comparison."""
    return run(argv, main_job=False)


def main_job(argv: Sequence[str] | None = None) -> int:
    """``python -m fastsoftmax``: a summary and the table against careful NumPy (about 12 s)."""
    return run(argv, main_job=True)
