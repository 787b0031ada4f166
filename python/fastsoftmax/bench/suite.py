"""Run the comparison: every (dtype, shape, operation, thread count), all implementations interleaved.

For each case, every implementation first runs once untimed and its result is
checked against the wide reference (this also compiles JAX's and TensorFlow's
functions); then all of them are timed together (:mod:`.timing`). The
memory-copy bandwidth is measured at the start and at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import numpy as np

from .accuracy import Reference, Result, in_eps, numpy_dtype, reference
from .peers import BACKWARD_OPS, PEERS, Case, FastSoftmax, Impl, Peer, optional_module
from .timing import copy_bandwidth, time_interleaved_samples


def all_threads() -> int:
    """The number of CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - macOS, Windows


@dataclass
class Settings:
    """What to run (built by .cli from the options); recorded in the JSON file."""

    shapes: list[tuple[int, int]]
    dtypes: list[str]
    ops: list[str]
    threads: list[int]
    peers: list[str]
    rounds: int
    min_time: float
    copy_bytes: int
    quick: bool = False
    progress: bool = True
    framework_arrays: bool = False  # also fastsoftmax fed the framework peers' own arrays


@dataclass
class Loaded:
    """fastsoftmax and the peers that could be imported, and notes on the others."""

    fastsoftmax: FastSoftmax
    peers: list[Peer]
    notes: list[str] = field(default_factory=list)


def load_peers(names: Sequence[str]) -> Loaded:
    fs = FastSoftmax()
    fs.load()
    loaded = Loaded(fs, [])
    for name in names:
        peer = PEERS[name]()
        try:
            ok = peer.load()
        except Exception as exc:  # noqa: BLE001 - installed but broken: note it, go on
            loaded.notes.append(f"{name}: failed to load ({type(exc).__name__}: {exc}), skipped")
            continue
        if ok:
            loaded.peers.append(peer)
        else:
            loaded.notes.append(f"{name}: not installed ({peer.install}), skipped")
    return loaded


def make_inputs(shape: tuple[int, int], dtype: str | np.dtype) -> dict[str, np.ndarray]:
    """Logits (normal, scale 3), an upstream gradient and labels; the same for every run.

    dtype: a NumPy dtype or a name of accuracy.DTYPES ("bfloat16": ml_dtypes.bfloat16).
    """
    dtype = numpy_dtype(dtype)
    rng = np.random.default_rng(list(shape))
    return {
        "x": (rng.standard_normal(shape) * 3).astype(dtype),
        "grad": rng.standard_normal(shape).astype(dtype),
        "labels": rng.integers(0, shape[1], shape[0]),
    }


def make_case(op: str, inputs: dict[str, np.ndarray]) -> tuple[Case, Reference]:
    """The case of op on these inputs (backward ops: on the rounded softmax or log_softmax)."""
    x, grad, labels = inputs["x"], inputs["grad"], inputs["labels"]
    if op in BACKWARD_OPS:
        forward = "softmax" if op == "softmax_backward" else "log_softmax"
        y = reference(forward, x).astype(x.dtype)
        return Case(op, y, grad, labels), Reference(op, x, y=y, g=grad)
    return Case(op, x, grad, labels), Reference(op, x, labels=labels)


class _Progress:
    """Progress on stderr, with whatever is installed.

    On a terminal: tqdm's bar when tqdm is installed, else one line of our own
    that rewrites itself ("[12/42] 3.1 s  softmax float32 256x32000 threads=1").
    Elsewhere (a pipe, a log file): a few plain lines, one when the run starts,
    one at each quarter of the cases done (at most five).
    """

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.total, self.count, self.quarter = total, 0, 0
        self.enabled = enabled and total > 0
        self.tty = self.enabled and _isatty(self.stream)
        self.start = time.perf_counter()
        self.text = ""  # the case that runs now
        self.width = 0  # the length of our line on the terminal (blanked when rewritten)
        self.bar: Any = None
        tqdm = optional_module("tqdm") if self.tty else None
        if tqdm is not None:
            self.bar = tqdm.tqdm(total=total, file=self.stream, unit="case", dynamic_ncols=True)
        elif self.enabled and not self.tty:
            self._print(f"timing {total} cases ...")

    def show(self, text: str) -> None:
        """Name the case that runs now."""
        self.text = text
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        elif self.tty:
            self._rewrite(f"[{self.count}/{self.total}] {self._elapsed()}  {text}")

    def done(self) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update()
        elif self.tty:
            self._rewrite(f"[{self.count}/{self.total}] {self._elapsed()}  {self.text}")
        elif self.enabled and self.count * 4 // self.total > self.quarter:
            self.quarter = self.count * 4 // self.total
            self._print(f"{self.count}/{self.total} cases timed, {self._elapsed()}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.tty:
            self._rewrite(f"{self.count}/{self.total} cases timed in {self._elapsed()}")
            self.stream.write("\n")
            self.stream.flush()

    def _elapsed(self) -> str:
        return f"{time.perf_counter() - self.start:.1f} s"

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def _rewrite(self, line: str) -> None:
        """Replace our line on the terminal (cut to its width: a wrapped line cannot be)."""
        line = line[: max(20, shutil.get_terminal_size().columns - 1)]
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


def case_label(case: Case, threads: int) -> str:
    rows, cols = case.x.shape
    return f"{case.op} {case.x.dtype} {rows}x{cols} threads={threads}"


def result_dtype(result: Result) -> str | None:
    """The dtype of a result's array (a cross-entropy gradient's); None for a loss alone."""
    if isinstance(result, tuple):
        return str(result[1].dtype)
    return str(result.dtype) if isinstance(result, np.ndarray) else None


def run_case(
    case: Case, ref: Reference, impls: list[Impl], settings: Settings, notes: list[str], label: str
) -> list[dict[str, Any]]:
    """Check each implementation once (the warm-up), then time the ones that ran, interleaved."""
    ok: list[Impl] = []
    errors: list[float] = []
    dtypes: list[str | None] = []
    for impl in impls:
        try:
            got = impl.result()
            with np.errstate(all="ignore"):
                errors.append(ref.error(got))
        except Exception as exc:  # noqa: BLE001 - a peer that cannot do this case: note it, go on
            notes.append(f"{impl.name}, {label}: {type(exc).__name__}: {exc}")
            continue
        dtypes.append(result_dtype(got))
        ok.append(impl)
    samples = time_interleaved_samples([i.call for i in ok], settings.rounds, settings.min_time)
    nbytes = case.traffic_bytes()
    rows = []
    for impl, err, dtype, s in zip(ok, errors, dtypes, samples):
        t = float(np.median(s))
        rows.append(
            {
                "peer": impl.peer,
                "impl": impl.name,
                "preallocated": impl.preallocated,
                "via": impl.via or None,
                "result_dtype": dtype,
                "time_s": t,
                "samples_s": s,
                "bytes": nbytes,
                "GBps": nbytes / t / 1e9,
                "max_error": err,
                "max_error_eps": in_eps(err, case.x.dtype),
            }
        )
    return rows


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """speedup = a peer's median / fastsoftmax's, the variant with the same output convention.

    A peer writing into preallocated arrays (careful NumPy) is compared with
    fastsoftmax's out= (in place) variant, a peer allocating its result with
    fastsoftmax allocating its result (where both variants exist).
    """
    fs = {r["impl"]: r for r in rows if r["impl"] in ("fastsoftmax", "fastsoftmax out=")}
    for r in rows:
        if r["impl"] in fs:
            r["speedup"] = r["speedup_against"] = None
            continue
        want = "fastsoftmax out=" if r["preallocated"] else "fastsoftmax"
        other = "fastsoftmax" if r["preallocated"] else "fastsoftmax out="
        ref = fs.get(want) or fs.get(other)
        r["speedup_against"] = ref["impl"] if ref else None
        r["speedup"] = r["time_s"] / ref["time_s"] if ref else None


def run(settings: Settings, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every case; returns the results (see report.build_document for the file)."""
    loaded = load_peers(settings.peers)
    for note in loaded.notes:
        echo(f"note: {note}")
    notes = list(loaded.notes)
    n_all = all_threads()
    copy_start = copy_bandwidth(settings.copy_bytes, settings.rounds, settings.min_time)
    total = len(settings.dtypes) * len(settings.shapes) * len(settings.ops) * len(settings.threads)
    progress = _Progress(total, settings.progress)
    results: list[dict[str, Any]] = []
    try:
        for dtype in settings.dtypes:
            for shape in settings.shapes:
                inputs = make_inputs(shape, dtype)
                for op in settings.ops:
                    case, ref = make_case(op, inputs)
                    for n in settings.threads:
                        progress.show(case_label(case, n))
                        results += run_threads(case, ref, loaded, n, n_all, settings, notes)
                        progress.done()
    finally:
        progress.close()
    copy_end = copy_bandwidth(settings.copy_bytes, settings.rounds, settings.min_time)
    samples = copy_start["samples_s"] + copy_end["samples_s"]
    t = float(np.median(samples))
    copy = {
        **copy_start,
        "time_s": t,
        "samples_s": samples,
        "GBps": 2 * copy_start["array_bytes"] / t / 1e9,
        "GBps_start": copy_start["GBps"],
        "GBps_end": copy_end["GBps"],
    }
    for r in results:
        r["copy_fraction"] = r["GBps"] / copy["GBps"]
    return {
        "settings": {**asdict(settings), "all_threads": n_all},
        "peers": _peer_info(loaded),
        "copy_bandwidth": copy,
        "notes": notes,
        "results": results,
    }


def run_threads(
    case: Case,
    ref: Reference,
    loaded: Loaded,
    n: int,
    n_all: int,
    settings: Settings,
    notes: list[str],
) -> list[dict[str, Any]]:
    """One case at n threads: fastsoftmax and every peer that runs at n threads."""
    active = [p for p in loaded.peers if p.runs_at(n, n_all)]
    with ExitStack() as stack:
        peer_impls: list[Impl] = []
        label = case_label(case, n)
        for p in [loaded.fastsoftmax, *active]:
            stack.enter_context(p.threads(n))
        for p in active:
            try:  # converting the inputs to the peer's arrays (a dtype it lacks, say) may fail
                impls = p.build(case)
            except Exception as exc:  # noqa: BLE001 - note it, go on without this peer
                notes.append(f"{p.name}, {label}: {type(exc).__name__}: {exc}")
                continue
            for impl in impls:
                impl.peer = p.name
                peer_impls.append(impl)
        for p in loaded.peers if settings.framework_arrays else []:
            # (at every thread count, even for a peer with rows at all threads only:
            # these are fastsoftmax's calls)
            framework_impls = getattr(p, "fastsoftmax_impls", None)
            if framework_impls is None:
                continue
            try:
                impls = framework_impls(case)
            except Exception as exc:  # noqa: BLE001 - note it, go on without these rows
                notes.append(f"fastsoftmax[{p.name}], {label}: {type(exc).__name__}: {exc}")
                continue
            for impl in impls:
                impl.peer = f"fastsoftmax[{p.name}]"
                peer_impls.append(impl)
        fs_impls = loaded.fastsoftmax.build(case)
        for impl in fs_impls:
            impl.peer = loaded.fastsoftmax.name
        if peer_impls:  # time only the fastsoftmax variants some peer is compared with
            conventions = {impl.preallocated for impl in peer_impls}
            fs_impls = [i for i in fs_impls if i.preallocated in conventions] or fs_impls
        rows = run_case(case, ref, fs_impls + peer_impls, settings, notes, label)
    add_speedups(rows)
    where = {"dtype": str(case.x.dtype), "shape": [int(d) for d in case.x.shape], "op": case.op}
    return [{**where, "threads": n, "all_threads": n == n_all, **r} for r in rows]


def _peer_info(loaded: Loaded) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for p in [loaded.fastsoftmax, *loaded.peers]:
        doc = (type(p).__doc__ or "").strip()
        info[p.name] = {
            "version": p.version,
            "description": doc.splitlines()[0] if doc else "",
            "threads": p.thread_info(),
        }
    return info
