"""Check the built sdist and the repaired wheel: what each holds, and nothing more.

    python .ci/check_dist.py SDIST WHEEL BUILD_DIR

The sdist must hold exactly what a build reads: the root's pyproject.toml, CMakeLists.txt,
README.md and LICENSE (the metadata names the last two), the CMake files and configured
templates under cpp/, every source and header the compiler read (the build tree's ninja
dependency log, BUILD_DIR being the build of this checkout that the README's
``pip install .`` left, plus the headers of the targets that this machine does not build,
found by the preprocessor), and the Python package. That it is also enough is shown by
.ci/run's sanitizer step, which builds the package from the sdist.

The wheel must hold the Python package and the extension, no library grafted by auditwheel
(``fastsoftmax.libs/``: the extension needs nothing outside the manylinux policy), and a
manylinux tag; the extension may link only the C and C++ runtimes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METADATA_FILES = {"pyproject.toml", "CMakeLists.txt", "README.md", "LICENSE"}
KERNEL_SOURCE = ["-Icpp/include", "-Icpp/src", "cpp/src/arch/instantiate.cpp"]
RUNTIME_LIBS = re.compile(r"lib(c|m|stdc\+\+|gcc_s|pthread|dl|rt)\.so\.\d+|ld-linux.*\.so\.\d+")


def tracked(*patterns: str) -> set[str]:
    out = subprocess.run(
        ["git", "ls-files", *patterns], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


def read_by_the_build(build_dir: Path) -> set[str]:
    """Files of this checkout that the compiler read in BUILD_DIR (ninja's deps log)."""
    log = subprocess.run(
        ["ninja", "-C", str(build_dir), "-t", "deps"], check=True, capture_output=True, text=True
    ).stdout
    read = set()
    for line in log.splitlines():
        path = Path(line.strip())
        if line.startswith(" ") and path.is_absolute() and path.is_relative_to(ROOT):
            read.add(path.relative_to(ROOT).as_posix())
    if not any(p.endswith("instantiate.cpp") for p in read):
        sys.exit(f"{build_dir}: the deps log names no kernel source; is it this checkout's build?")
    return read


def read_by_other_targets() -> set[str]:
    """The headers each target's kernels include, targets this machine does not build too."""
    read = set()
    for target in sorted({Path(p).parts[3] for p in tracked("cpp/src/arch/*/*")}):
        deps = subprocess.run(
            ["g++", "-std=c++17", "-MM", "-MG", f"-DFASTSOFTMAX_TARGET={target}", *KERNEL_SOURCE],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        read |= {w for w in deps.replace("\\\n", " ").split() if (ROOT / w).is_file()}
    return read


def check_sdist(sdist: Path, build_dir: Path) -> list[str]:
    with tarfile.open(sdist) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    top = {n.split("/", 1)[0] for n in names}
    if len(top) != 1:
        return [f"sdist: expected one top folder, found {sorted(top)}"]
    held = {n.split("/", 1)[1] for n in names} - {"PKG-INFO"}
    needed = (
        METADATA_FILES
        | tracked("cpp/*CMakeLists.txt", "cpp/*.in", "python/*")
        | ({p for p in read_by_the_build(build_dir) if p.startswith("cpp/")})
        | read_by_other_targets()
    )
    problems = [f"sdist holds {p}, which no build reads" for p in sorted(held - needed)]
    problems += [f"sdist lacks {p}, which the build reads" for p in sorted(needed - held)]
    return problems


def check_wheel(wheel: Path) -> list[str]:
    problems = []
    if not re.search(r"-manylinux_\d+_\d+_x86_64(\.manylinux\w+)*\.whl$", wheel.name):
        problems.append(f"wheel {wheel.name}: not a manylinux x86_64 tag")
    with zipfile.ZipFile(wheel) as zf:
        names = {n for n in zf.namelist() if not n.endswith("/")}  # (not folder entries)
        package = {n for n in names if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}
        extensions = [n for n in package if re.fullmatch(r"fastsoftmax/_core\..*\.so", n)]
        if len(extensions) != 1:
            return [*problems, f"wheel: expected one fastsoftmax/_core*.so, found {extensions}"]
        expected = {
            "fastsoftmax/" + Path(p).relative_to("python/fastsoftmax").as_posix()
            for p in tracked("python/fastsoftmax")
        } | set(extensions)
        problems += [f"wheel holds {p}, which is not the package" for p in package - expected]
        problems += [f"wheel lacks {p}" for p in expected - package]
        so = ROOT / "build" / "check_dist_core.so"
        so.parent.mkdir(exist_ok=True)
        so.write_bytes(zf.read(extensions[0]))
    dynamic = subprocess.run(["readelf", "-d", str(so)], check=True, capture_output=True, text=True)
    for lib in re.findall(r"\(NEEDED\).*\[(.+)\]", dynamic.stdout):
        if not RUNTIME_LIBS.fullmatch(lib):
            problems.append(f"the extension links {lib}, not a C/C++ runtime")
    so.unlink()
    return problems


def main() -> None:
    if len(sys.argv) != 4:  # (a glob for BUILD_DIR that matched several build trees, say)
        sys.exit(f"usage: python .ci/check_dist.py SDIST WHEEL BUILD_DIR (got {sys.argv[1:]})")
    sdist, wheel, build_dir = (Path(a).resolve() for a in sys.argv[1:])
    problems = check_sdist(sdist, build_dir) + check_wheel(wheel)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{sdist.name}: exactly what a build reads; {wheel.name}: the package, nothing grafted")


if __name__ == "__main__":
    main()
