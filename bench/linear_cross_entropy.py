"""fs.linear_cross_entropy against the matrix products alone and against PyTorch (issue 16).

    python bench/linear_cross_entropy.py time [--shape N D V] [--rounds 3] [--no-torch] [--only S]
    python bench/linear_cross_entropy.py memory [--shape N D V] [--no-torch]

Forward and every gradient (hidden, weight), float32, integer labels, mean.

``time``: the candidates take turns, ``rounds`` times, each called twice in a row
and timed the second time (as in a training loop, where the previous step's
results were just freed: the first call after another candidate's large arrays
can spend most of a second in page faults, the kernel compacting memory for the
huge pages NumPy asks for); prints each one's median and its ratio to "3 GEMMs"
-- the three products of the unfused computation (logits = h @ W.T, d_hidden =
G @ W, d_weight = G.T @ h) into preallocated arrays, nothing else ("3 GEMMs,
allocating": the same products returning new arrays, as fastsoftmax's results
are; "3 GEMMs in fused's chunks": the same products in the chunks of tokens that
fs.linear_cross_entropy takes by default, nothing else -- what the products cost
under the memory bound, whatever computes the loss; "4 GEMMs in vocabulary
chunks": the products of the other schedule, chunks of the vocabulary for all
tokens, in two passes, as that schedule needs, nothing else). "NumPy, unfused": the logits, fs.cross_entropy's gradient
in place of them, the two products. PyTorch (with torch installed, threads set
to fastsoftmax's): ``F.cross_entropy(F.linear(h, W), y)`` + ``backward()``, and
``F.linear_cross_entropy`` with ``options=None`` (its reference path) and with
each chunking method its ``LinearCrossEntropyOptions`` accepts. States which
BLAS kernel NumPy's OpenBLAS runs (threadpoolctl).

``memory``: each candidate in a fresh process, after a first call of its own: the peak resident memory of one call
beyond the inputs and the results (VmHWM, reset before the call, minus the RSS
before it), and tracemalloc's peak for the NumPy candidates; printed
beside the unfused logits and gradient (2 N V float32 values).

Pin one thread with ``taskset -c 1`` (fastsoftmax, OpenBLAS and PyTorch each
follow the affinity mask).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable

import fastsoftmax as fs
import numpy as np
from fastsoftmax._blas import add_product, gemm_source
from fastsoftmax._linear import default_chunk_size

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - optional peer
    torch = None


def _inputs(n: int, d: int, v: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    h = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal((v, d), dtype=np.float32) * np.float32(d**-0.5)
    y = rng.integers(0, v, n)
    return h, w, y


def _candidates(
    h: np.ndarray, w: np.ndarray, y: np.ndarray, use_torch: bool
) -> dict[str, Callable[[], object]]:
    n, _ = h.shape
    v = w.shape[0]
    logits = np.empty((n, v), np.float32)
    d_h = np.empty_like(h)
    d_w = np.empty_like(w)

    def gemms() -> None:
        np.matmul(h, w.T, out=logits)
        np.matmul(logits, w, out=d_h)
        np.matmul(logits.T, h, out=d_w)

    def gemms_allocating() -> None:
        x = h @ w.T
        _ = x @ w, x.T @ h

    rows = default_chunk_size(n, v, 4)
    chunk = np.empty((rows, v), np.float32)

    def gemms_chunked() -> None:
        for a in range(0, n, rows):
            x = chunk[: min(rows, n - a)]
            np.matmul(h[a : a + rows], w.T, out=x)
            np.matmul(x, w, out=d_h[a : a + rows])
            if a == 0:
                np.matmul(x.T, h[:rows], out=d_w)
            else:
                add_product(d_w, x.T, h[a : a + rows])

    cols = max(1, int(v * 0.09))  # vocabulary chunks of the same memory as the token chunks
    vchunk = np.empty(n * cols, np.float32)

    def gemms_vocabulary() -> None:
        # the other schedule: the logits of all tokens for a chunk of the vocabulary (H is
        # read again for each chunk, W once), two passes because a row's gradient needs
        # its logsumexp over every chunk: pass 1 makes the logits, pass 2 makes them again,
        # d_weight[chunk] = G.T @ h (written once) and d_hidden += G @ W[chunk]
        for second in (False, True):
            for a in range(0, v, cols):
                wb = w[a : a + cols]
                x = vchunk[: n * wb.shape[0]].reshape(n, wb.shape[0])
                np.matmul(h, wb.T, out=x)
                if second:
                    np.matmul(x.T, h, out=d_w[a : a + cols])
                    if a == 0:
                        np.matmul(x, wb, out=d_h)
                    else:
                        add_product(d_h, x, wb)

    def fused() -> object:
        return fs.linear_cross_entropy(h, w, y, return_grad=True)

    def unfused() -> object:
        x = h @ w.T
        loss, g = fs.cross_entropy(x, y, return_grad=True, inplace_grad=True)
        return loss, g @ w, g.T @ h

    out: dict[str, Callable[[], object]] = {
        "3 GEMMs": gemms,
        "3 GEMMs, allocating": gemms_allocating,
        "3 GEMMs in fused's chunks": gemms_chunked,
        "4 GEMMs in vocabulary chunks": gemms_vocabulary,
        "fastsoftmax fused": fused,
        "NumPy, unfused": unfused,
    }
    if use_torch and torch is not None:
        torch.set_num_threads(fs.get_num_threads())
        th = torch.from_numpy(h).requires_grad_()
        tw = torch.from_numpy(w).requires_grad_()
        ty = torch.from_numpy(y)

        def run(fn: Callable[[], torch.Tensor]) -> Callable[[], object]:
            def step() -> object:
                loss = fn()
                loss.backward()
                out = loss, th.grad, tw.grad  # (the caller holds the results, as ours)
                th.grad = tw.grad = None
                return out

            return step

        out["torch CE(linear)"] = run(lambda: F.cross_entropy(F.linear(th, tw), ty))
        out["torch linear_CE reference"] = run(
            lambda: F.linear_cross_entropy(th, tw, ty, options=None)
        )
        for method, kw in _torch_methods().items():
            opts = torch.nn.LinearCrossEntropyOptions(**kw)  # type: ignore[arg-type]
            out[f"torch linear_CE {method}"] = run(
                lambda o=opts: F.linear_cross_entropy(th, tw, ty, options=o)
            )
    return out


def _torch_methods() -> dict[str, dict[str, object]]:
    """PyTorch's chunking options (LinearCrossEntropyOptions keywords): "auto", the
    aspect-ratio rule and two of its divisions, an explicit chunk of 256 tokens, and
    the accurate accumulation policy."""
    if torch is None or not hasattr(torch.nn, "LinearCrossEntropyOptions"):
        return {}
    return {
        "auto": {},
        "aspect_ratio": {"chunking_method": "aspect_ratio"},
        "aspect_ratio:2": {"chunking_method": "aspect_ratio:2"},
        "aspect_ratio:4": {"chunking_method": "aspect_ratio:4"},
        "batch_chunk_size=256": {"chunking_method": None, "batch_chunk_size": 256},
        "auto, accurate": {"acc_policy": "accurate"},
    }


def _blas() -> str:
    try:
        import threadpoolctl
    except ImportError:
        return "threadpoolctl not installed"
    info = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    return "; ".join(
        f"{i['internal_api']} {i['version']} kernel {i.get('architecture')}, "
        f"{i['num_threads']} threads ({os.path.basename(i['filepath'])})"
        for i in info
    )


def time_all(args: argparse.Namespace) -> None:
    n, d, v = args.shape
    h, w, y = _inputs(n, d, v)
    cands = _candidates(h, w, y, not args.no_torch)
    if args.only:
        cands = {k: f for k, f in cands.items() if k == "3 GEMMs" or args.only in k}

    print(f"(N, D, V) = ({n}, {d}, {v}) float32; fastsoftmax threads {fs.get_num_threads()}; "
          f"d_weight accumulated by {gemm_source()}")  # fmt: skip
    print(f"NumPy's BLAS: {_blas()}")
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print(f"environment: {env}")
    for f in cands.values():  # warm-up (and the first touch of every buffer)
        f()
    times: dict[str, list[float]] = {k: [] for k in cands}
    for _ in range(args.rounds):
        for k, f in cands.items():
            gc.collect()
            f()  # (the memory the previous candidate left: see the docstring)
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    base = statistics.median(times["3 GEMMs"])
    for k, ts in times.items():
        m = statistics.median(ts)
        print(
            f"{k:34s} {m:8.3f} s  {m / base:5.2f}x the 3 GEMMs   (runs {', '.join(f'{t:.3f}' for t in ts)})"
        )


def _measure(name: str, n: int, d: int, v: int) -> dict[str, float]:
    use_torch = name.startswith("torch")
    h, w, y = _inputs(n, d, v)
    f = _candidates(h, w, y, use_torch)[name]
    # a first call: libraries loaded, and the pages of the BLAS's own work buffers that
    # products of this size touch, which every candidate's products need (and the
    # products alone too): not the candidate's memory
    result = f()
    del result
    gc.collect()
    with open("/proc/self/clear_refs", "w") as c:  # reset the peak RSS (VmHWM) to the RSS
        c.write("5")
    before = _status("VmRSS")
    tracemalloc.start()
    result = f()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = _status("VmHWM")
    del result
    results = h.nbytes + w.nbytes  # d_hidden and d_weight (the loss is a scalar)
    return {"rss_extra": rss_peak - before - results, "tracemalloc_extra": peak - results}


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def memory(args: argparse.Namespace) -> None:
    n, d, v = args.shape
    unfused = 2 * n * v * 4
    names = ["fastsoftmax fused", "NumPy, unfused"]
    if not args.no_torch and torch is not None:
        names += ["torch CE(linear)", "torch linear_CE reference"]
        names += [f"torch linear_CE {m}" for m in _torch_methods()]
    if args.only:
        names = [k for k in names if args.only in k]
    print(
        f"(N, D, V) = ({n}, {d}, {v}) float32; unfused logits + gradient {unfused / 2**20:.0f} MiB"
    )
    for name in names:
        cmd = [sys.executable, __file__, "_one", name, *map(str, args.shape)]
        r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        tm = (
            ""
            if name.startswith("torch")
            else f", tracemalloc {r['tracemalloc_extra'] / 2**20:7.1f} MiB"
        )
        print(f"{name:34s} peak RSS beyond inputs and results {r['rss_extra'] / 2**20:7.1f} MiB "
              f"({r['rss_extra'] / unfused:6.1%} of the unfused){tm}")  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        name = sys.argv[2]
        n, d, v = map(int, sys.argv[3:6])
        print(json.dumps(_measure(name, n, d, v)))
        return
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("mode", choices=("time", "memory"))
    p.add_argument(
        "--shape", type=int, nargs=3, default=(4096, 1024, 32000), metavar=("N", "D", "V")
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--only", help="time only the candidates whose names contain this")
    args = p.parse_args()
    (time_all if args.mode == "time" else memory)(args)


if __name__ == "__main__":
    main()
