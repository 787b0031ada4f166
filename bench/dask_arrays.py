"""fastsoftmax.dask against the in-memory functions (issue 18's speed targets).

    python bench/dask_arrays.py lse [--rows 8192] [--classes 32000] [--chunks 8] [--rounds 7]
    python bench/dask_arrays.py make-zarr --path P [--rows 262144] [--classes 32000]
    python bench/dask_arrays.py perplexity --path P [--workers 2] [--memory-limit 2GiB]
                                           [--rounds 1] [--drop-caches]
                                           [--worker-malloc both|distributed|glibc]

``lse``: logsumexp of an in-memory (rows, classes) float32 dask array cut into ``chunks``
chunks of the class axis, on dask's threaded scheduler (one worker thread per core),
against ``fs.logsumexp`` of the NumPy array (fastsoftmax's threads, one per core), the
two taking turns; prints the median times and the throughput ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import dask
import dask.array as da
import fastsoftmax as fs
import fastsoftmax.dask as fsd
import numpy as np


def lse(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.classes), dtype=np.float32) * 4
    per = -(-args.classes // args.chunks)
    # two dask arrays of the same values: chunks that are views of one NumPy array
    # (da.from_array: rows of a chunk 1/chunks of the rows of memory apart), and chunks
    # that are arrays of their own (as a computation, a persist or a Zarr read makes them)
    views = da.from_array(x, chunks=(args.rows, per))
    own = da.concatenate(
        [
            da.from_array(np.ascontiguousarray(x[:, a : a + per]))
            for a in range(0, args.classes, per)
        ],
        axis=1,
    )
    graphs = {"views": fsd.logsumexp(views), "own chunks": fsd.logsumexp(own)}
    want = fs.logsumexp(x)
    cores = len(os.sched_getaffinity(0))
    times: dict[str, list[float]] = {"in memory": [], **{k: [] for k in graphs}}
    with dask.config.set(scheduler="threads", num_workers=cores):
        for g in graphs.values():
            np.testing.assert_allclose(g.compute(), want, rtol=2e-7)
        for _ in range(args.rounds):
            t = time.perf_counter()
            fs.logsumexp(x)
            times["in memory"].append(time.perf_counter() - t)
            for k, g in graphs.items():
                t = time.perf_counter()
                g.compute()
                times[k].append(time.perf_counter() - t)
    gb = x.nbytes / 1e9
    m = statistics.median(times["in memory"])
    print(
        f"logsumexp {x.shape} float32, {args.chunks} chunks of the class axis, {cores} cores, "
        f"median of {args.rounds}"
    )
    print(f"  fs.logsumexp (NumPy array)       : {m * 1e3:8.2f} ms  {gb / m:6.2f} GB/s")
    for k in graphs:
        d = statistics.median(times[k])
        print(
            f"  fsd.logsumexp (threaded, {k:10s}): {d * 1e3:8.2f} ms  {gb / d:6.2f} GB/s"
            f"  throughput / in-memory {m / d:.2f}"
        )


def make_zarr(args: argparse.Namespace) -> None:
    """A (rows, classes) float16 array of logits in Zarr on disk, uncompressed, in chunks
    of (row_chunk, classes / class_chunks), and its labels (int64, .npy beside it)."""
    import zarr

    rng = np.random.default_rng(0)
    per = -(-args.classes // args.class_chunks)
    z = zarr.create_array(
        store=args.path,
        shape=(args.rows, args.classes),
        chunks=(args.row_chunk, per),
        dtype="float16",
        compressors=None,
        overwrite=True,
    )
    t = time.perf_counter()
    for r0 in range(0, args.rows, args.row_chunk):
        r1 = min(args.rows, r0 + args.row_chunk)
        block = rng.standard_normal((r1 - r0, args.classes), dtype=np.float32) * 3
        z[r0:r1] = block.astype(np.float16)
    np.save(args.path + ".labels.npy", rng.integers(0, args.classes, args.rows))
    gb = args.rows * args.classes * 2 / 1e9
    print(
        f"wrote {args.path}: {z.shape} float16, {gb:.1f} GB, chunks {z.chunks}, "
        f"in {time.perf_counter() - t:.0f} s"
    )


def perplexity(args: argparse.Namespace) -> None:
    """Mean cross-entropy (and perplexity) of the Zarr logits: a single-process loop over
    row blocks (zarr reads, fs.cross_entropy on one thread) against fastsoftmax.dask on a
    LocalCluster of memory-limited single-threaded worker processes; every worker's
    resident memory sampled while it runs."""
    import threading

    import distributed
    import psutil
    import zarr

    z = zarr.open_array(args.path, mode="r")
    labels = np.load(args.path + ".labels.npy")
    rows, classes = z.shape
    gb = rows * classes * 2 / 1e9
    step = z.chunks[0]

    def loop() -> tuple[float, float]:
        total = 0.0
        t = time.perf_counter()
        with fs.use_threads(1):
            for r0 in range(0, rows, step):
                r1 = min(rows, r0 + step)
                total += float(fs.cross_entropy(z[r0:r1], labels[r0:r1], reduction="sum"))
        return total / rows, time.perf_counter() - t

    def cluster(malloc: str) -> tuple[float, float, list[int]]:
        """The dask run, its workers' environment distributed's own
        (``distributed.nanny.pre-spawn-environ``: MALLOC_TRIM_THRESHOLD_=65536) or,
        for ``malloc="glibc"``, that less the trim threshold: glibc's default
        allocator, whose mmap threshold adapts (setting the trim threshold fixes it at
        128 KiB, so that every chunk buffer is a fresh mapping whose pages fault in)."""
        unset = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
        if malloc == "glibc":  # (an earlier cluster's nanny left it in os.environ)
            os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        with (
            dask.config.set(unset if malloc == "glibc" else {}),
            distributed.LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                processes=True,
                memory_limit=args.memory_limit,
                dashboard_address=None,
            ) as c,
            distributed.Client(c) as client,
        ):
            client.run(lambda: fs.set_num_threads(1))  # (one core per worker)
            peak: dict[str, int] = {}
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    for w, rss in client.run(lambda: psutil.Process().memory_info().rss).items():
                        peak[w] = max(peak.get(w, 0), rss)
                    done.wait(0.2)

            sampler = threading.Thread(target=sample)
            dx = da.from_zarr(args.path)
            loss = fsd.cross_entropy(dx, labels)
            t = time.perf_counter()
            sampler.start()
            value = float(client.compute(loss, sync=True))
            elapsed = time.perf_counter() - t
            done.set()
            sampler.join()
            return value, elapsed, sorted(peak.values())

    print(
        f"perplexity of {args.path}: {rows} x {classes} float16 ({gb:.1f} GB), "
        f"chunks {z.chunks} ({-(-classes // z.chunks[1])} along the classes)"
    )

    def drop_caches() -> None:
        """Start a phase with the file out of the page cache (root only), so that each
        reads it from disk rather than the previous phase's cached copy."""
        if args.drop_caches:
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("1\n")

    for r in range(args.rounds):
        drop_caches()
        mean_loop, t_loop = loop()
        print(
            f"round {r}: loop (1 core) {t_loop:6.1f} s {gb / t_loop:5.2f} GB/s, "
            f"mean {mean_loop:.6f}"
        )
        mallocs = ["distributed", "glibc"] if args.worker_malloc == "both" else [args.worker_malloc]
        for malloc in mallocs:
            drop_caches()
            mean_dask, t_dask, peaks = cluster(malloc)
            per_core = (rows / t_dask / args.workers) / (rows / t_loop)
            print(
                f"  dask ({args.workers} workers, {args.memory_limit} each, malloc {malloc}) "
                f"{t_dask:6.1f} s {gb / t_dask:5.2f} GB/s, mean {mean_dask:.6f}; "
                f"per core {per_core:.2f}; "
                f"worker peak RSS {', '.join(f'{p / 2**30:.2f}' for p in peaks)} GiB"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    q = sub.add_parser("lse")
    q.add_argument("--rows", type=int, default=8192)
    q.add_argument("--classes", type=int, default=32000)
    q.add_argument("--chunks", type=int, default=8)
    q.add_argument("--rounds", type=int, default=7)
    m = sub.add_parser("make-zarr")
    m.add_argument("--path", required=True)
    m.add_argument("--rows", type=int, default=262_144)
    m.add_argument("--classes", type=int, default=32_000)
    m.add_argument("--row-chunk", type=int, default=2048)
    m.add_argument("--class-chunks", type=int, default=4)
    q = sub.add_parser("perplexity")
    q.add_argument("--path", required=True)
    q.add_argument("--workers", type=int, default=2)
    q.add_argument("--memory-limit", default="2GiB")
    q.add_argument("--rounds", type=int, default=1)
    q.add_argument("--drop-caches", action="store_true", help="before each phase (root)")
    q.add_argument(
        "--worker-malloc",
        choices=["both", "distributed", "glibc"],
        default="both",
        help="the workers' allocator settings: distributed's (MALLOC_TRIM_THRESHOLD_=65536), "
        "glibc's defaults, or each in turn",
    )
    args = p.parse_args()
    {"lse": lse, "make-zarr": make_zarr, "perplexity": perplexity}[args.what](args)


if __name__ == "__main__":
    main()
