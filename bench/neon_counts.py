"""Instructions per element of the NEON kernels on rows of few classes, counted under
qemu-aarch64: issue 17 part 1's table where no AArch64 machine is at hand.

    python bench/neon_counts.py [--before ROOT] [--classes 1,2,3] [--ops softmax,ce]

Builds the C++ core and the neon and baseline targets for AArch64 as
tests/native/neon_check.py does (into build/neon-check, reused while nothing changed),
links bench/neon_counts.cpp's driver with them, and builds bench/qemu_insn_count.c, a
qemu plugin, with the host's cc. For each op and number of classes C it runs the driver
under qemu-aarch64 with 0 and 10 calls on a contiguous (131072 // C, C) float32 array:
the difference over 10 times the array's size is the guest instructions per element
(the driver copies the logits before each call, for the cross-entropy's gradient in
place: that copy's own count is subtracted, as bench/few_classes.py subtracts its time). Counts, not
times: the same on every run, but blind to latencies and to which instructions a core
runs in parallel (a division counts as one).

--before ROOT: another checkout (a `git worktree` of an older commit, say), built the
same way into ROOT/build/neon-check, whose counts join the table with the ratio
this / before.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OPS = ["softmax", "log_softmax", "logsumexp", "ce"]
CLASSES = [1, 2, 3, 4, 5, 8, 10, 16, 33, 64]
ELEMENTS = 131072
REPEATS = 10
CXX = "aarch64-linux-gnu-g++"


def build_driver(root: Path) -> Path:
    """root's core and targets for AArch64 (neon_check.build, in its own process: it
    imports the test suite of its checkout), linked with this checkout's driver."""
    build_dir = root / "build" / "neon-check"
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, 'tests/native'); "
        f"import neon_check; neon_check.build(Path({str(build_dir)!r}), {CXX!r}, 2); "
        "print(*[o for _, _, o in neon_check.sources() if o != 'kernel_check.o'])"
    )
    built = subprocess.run(
        [sys.executable, "-c", code], cwd=root, check=True, capture_output=True, text=True
    )
    driver = build_dir / "neon_counts"
    objects = [build_dir / o for o in built.stdout.splitlines()[-1].split()]
    include = [f"-I{root / 'cpp' / 'include'}", f"-I{root / 'cpp' / 'src'}"]
    flags = ["-std=c++17", "-O2", "-DNDEBUG"]
    main = build_dir / "neon_counts_main.o"
    subprocess.run(
        [CXX, *flags, *include, "-c", str(HERE / "neon_counts.cpp"), "-o", str(main)], check=True
    )
    subprocess.run(
        [CXX, "-static", "-pthread", *map(str, objects), str(main), "-o", str(driver)], check=True
    )
    return driver


def build_plugin(build_dir: Path) -> Path:
    plugin = build_dir / "qemu_insn_count.so"
    src = HERE / "qemu_insn_count.c"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", str(src), "-o", str(plugin)], check=True)
    return plugin


@functools.cache  # (the copy's count serves every op of a C)
def count(plugin: Path, driver: Path, op: str, c: int, repeats: int) -> int:
    env = dict(os.environ, FASTSOFTMAX_SIMD="neon")
    cmd = ["qemu-aarch64", "-plugin", str(plugin), "-d", "plugin", str(driver), op, str(c)]
    out = subprocess.run(
        [*cmd, str(ELEMENTS), str(repeats)], env=env, check=True, capture_output=True, text=True
    )
    text = out.stdout + out.stderr
    if not text.startswith("neon "):
        sys.exit(f"the driver ran another target: {text.strip()}")
    return int(text.split("insns ")[1].split()[0])


def per_element(plugin: Path, driver: Path, op: str, c: int) -> float:
    calls = count(plugin, driver, op, c, REPEATS) - count(plugin, driver, "copy", c, REPEATS)
    return calls / (REPEATS * (ELEMENTS // c) * c)


def arguments(doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout's root")
    parser.add_argument("--classes", default=",".join(map(str, CLASSES)))
    parser.add_argument("--ops", default=",".join(OPS))
    return parser.parse_args()


def print_table(
    args: argparse.Namespace, drivers: dict[str, Path], per_op: Callable[[Path, str, int], float]
) -> None:
    """Each op's count per element (per_op(driver, op, C)) for this build, and with
    --before, the other build's and the ratio this / before."""
    classes = [int(c) for c in args.classes.split(",")]
    print(f"{'op':<12}" + "".join(f"{c:>8}" for c in classes))
    for op in args.ops.split(","):
        counts = {k: [per_op(d, op, c) for c in classes] for k, d in drivers.items()}
        print(f"{op:<12}" + "".join(f"{v:8.2f}" for v in counts["this"]))
        if "before" in counts:
            print(f"{'  before':<12}" + "".join(f"{v:8.2f}" for v in counts["before"]))
            ratios = [a / b for a, b in zip(counts["this"], counts["before"])]
            print(f"{'  this/before':<12}" + "".join(f"{r:8.2f}" for r in ratios))


def main() -> None:
    args = arguments(__doc__)
    drivers = {"this": build_driver(ROOT)}
    if args.before:
        drivers["before"] = build_driver(args.before.resolve())
    plugin = build_plugin(drivers["this"].parent)
    print(f"NEON (qemu-aarch64), float32, {ELEMENTS} elements: guest instructions per element")
    print_table(args, drivers, functools.partial(per_element, plugin))


if __name__ == "__main__":
    main()
