"""Two builds of fastsoftmax, interleaved: is any operation slower after a change?

    python bench/compare_builds.py BEFORE_PYTHON AFTER_PYTHON [--runs 5] [-- bench options]

Each interpreter (a virtual environment with one build installed) runs
``python -m fastsoftmax.bench --quick --json ...`` in turn, ``--runs`` times each,
alternating before / after so that drift of the machine falls on both; pinned
to one CPU with ``taskset -c 1`` where taskset exists. Bench options after ``--``
replace the default ``--quick --threads 1 --peers numpy``.

Prints one Markdown table: per (dtype, shape, op, variant) the median over the
runs of fastsoftmax's median time in each build, their ratio, and the same for
careful NumPy, whose ratio shows how far the two builds' runs agreed on the
machine itself.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

DEFAULT_BENCH = ["--quick", "--threads", "1", "--peers", "numpy", "--no-progress"]
Key = tuple[str, tuple[int, ...], str, str]  # dtype, shape, op, impl


def run_once(python: str, bench_args: list[str], out: Path) -> dict[Key, float]:
    """One benchmark run: impl -> median time, per (dtype, shape, op)."""
    cmd = [python, "-m", "fastsoftmax.bench", *bench_args, "--json", str(out)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    data = json.loads(out.read_text())
    return {
        (r["dtype"], tuple(r["shape"]), r["op"], r["impl"]): r["time_s"]
        for r in data["results"]
        if r["threads"] == 1
    }


def fmt(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} us"


def main() -> None:
    argv = sys.argv[1:]
    bench_args = DEFAULT_BENCH
    if "--" in argv:
        cut = argv.index("--")
        argv, bench_args = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", help="the Python of the environment with the earlier build")
    p.add_argument("after", help="the Python of the environment with the later build")
    p.add_argument("--runs", type=int, default=5, help="runs of each build (alternating)")
    args = p.parse_args(argv)

    times: dict[str, dict[Key, list[float]]] = {
        "before": defaultdict(list),
        "after": defaultdict(list),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for name in ("before", "after"):
                python = getattr(args, name)
                got = run_once(python, bench_args, Path(tmp) / f"{name}{i}.json")
                for key, t in got.items():
                    times[name][key].append(t)
                print(f"run {i + 1}/{args.runs} {name} done", file=sys.stderr)

    def median(name: str, key: Key) -> float | None:
        v = times[name].get(key)
        return statistics.median(v) if v else None

    keys = sorted(
        {k[:3] for k in times["after"]}, key=lambda k: (k[0], k[1][0] * k[1][1], k[1], k[2])
    )
    print("| dtype | shape | op | variant | before | after | after/before | numpy after/before |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    worst = 0.0
    for dtype, shape, op in keys:
        nb, na = (
            median("before", (dtype, shape, op, "numpy")),
            median("after", (dtype, shape, op, "numpy")),
        )
        numpy_ratio = f"{na / nb:.3f}" if nb and na else "-"
        for impl in ("fastsoftmax", "fastsoftmax out="):
            b, a = (
                median("before", (dtype, shape, op, impl)),
                median("after", (dtype, shape, op, impl)),
            )
            if b is None or a is None:
                continue
            worst = max(worst, a / b)
            variant = "out=" if impl.endswith("out=") else "allocating"
            print(
                f"| {dtype} | {'x'.join(map(str, shape))} | {op} | {variant} | {fmt(b)} "
                f"| {fmt(a)} | {a / b:.3f} | {numpy_ratio} |"
            )
    print(f"\nlargest after/before: {worst:.3f} ({args.runs} runs of each build, medians)")


if __name__ == "__main__":
    main()
