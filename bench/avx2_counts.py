"""Instructions per element of the avx2 kernels on rows of few classes, counted with
valgrind: bench/neon_counts.py's table for x86, where timings are too noisy to rank two
builds (a shared machine) or the change is smaller than the noise.

    python bench/avx2_counts.py [--before ROOT] [--classes 1,2,3] [--ops softmax,ce]

Builds the C++ core with the avx2 and baseline targets for this machine with the host's
g++ and the flags of cpp/CMakeLists.txt (into build/avx2-counts, or ROOT/build/avx2-counts,
rebuilt on every run: about 5 minutes on 2 cores), links bench/neon_counts.cpp's driver
with it, and counts each op's instructions under `valgrind --tool=callgrind` as
bench/neon_counts.py counts them under qemu: 10 calls on a contiguous (131072 // C, C)
float32 array, less the logits' copies, over 10 times the array's size. Deterministic,
but blind to latencies, to which instructions a core runs in parallel, and to where code
lands in memory (one build read 5% slower than another at 2 classes with 3% fewer
instructions).

--before ROOT: another checkout (a `git worktree` of an older commit), built the same
way, whose counts join the table with the ratio this / before.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import re
import subprocess
import sys
from pathlib import Path

from neon_counts import ELEMENTS, REPEATS, arguments, print_table  # (beside this script)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FLAGS = ["-std=c++17", "-O3", "-DNDEBUG", "-ffp-contract=off", "--param=inline-unit-growth=100"]
TARGETS = {"avx2": ["-mavx2", "-mfma", "-mf16c"], "baseline": []}


def build_driver(root: Path) -> Path:
    """root's core (avx2 and baseline) for this machine, linked with this checkout's driver."""
    out = root / "build" / "avx2-counts"
    out.mkdir(parents=True, exist_ok=True)
    src = root / "cpp" / "src"
    include = [f"-I{root / 'cpp' / 'include'}", f"-I{src}"]
    jobs = [
        (src / "arch" / "instantiate.cpp", [*flags, f"-DFASTSOFTMAX_TARGET={t}"], f"{t}.o")
        for t, flags in TARGETS.items()
    ]
    core = sorted(src.glob("*.cpp")) + sorted((src / "layout").glob("*.cpp"))
    jobs += [(p, ["-DFASTSOFTMAX_HAVE_AVX2"], f"{p.stem}.o") for p in core]
    jobs.append((HERE / "neon_counts.cpp", ["-DFASTSOFTMAX_HAVE_AVX2"], "neon_counts_main.o"))

    def compile_one(job: tuple[Path, list[str], str]) -> Path:
        path, extra, name = job
        obj = out / name
        cmd = ["g++", *FLAGS, *extra, *include, "-c", str(path), "-o", str(obj)]
        subprocess.run(cmd, check=True)
        return obj

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        objects = list(pool.map(compile_one, jobs))
    driver = out / "avx2_counts"
    subprocess.run(["g++", "-pthread", *map(str, objects), "-o", str(driver)], check=True)
    return driver


@functools.cache  # (the copy's count serves every op of a C)
def count(driver: Path, op: str, c: int, repeats: int) -> int:
    env = dict(os.environ, FASTSOFTMAX_SIMD="avx2")
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", str(driver), op]
    out = subprocess.run(
        [*cmd, str(c), str(ELEMENTS), str(repeats)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    if not out.stdout.startswith("avx2 "):
        sys.exit(f"the driver ran another target: {out.stdout.strip()}")
    found = re.search(r"refs:\s*([\d,]+)", out.stderr)
    if not found:
        sys.exit(f"no count in valgrind's output: {out.stderr[-300:]}")
    return int(found.group(1).replace(",", ""))


def per_element(driver: Path, op: str, c: int) -> float:
    calls = count(driver, op, c, REPEATS) - count(driver, "copy", c, REPEATS)
    return calls / (REPEATS * (ELEMENTS // c) * c)


def main() -> None:
    args = arguments(__doc__)
    drivers = {"this": build_driver(ROOT)}
    if args.before:
        drivers["before"] = build_driver(args.before.resolve())
    print(f"avx2 (valgrind), float32, {ELEMENTS} elements: instructions per element")
    print_table(args, drivers, per_element)


if __name__ == "__main__":
    main()
