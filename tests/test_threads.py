"""Threads: the setting and its environment variable, the pool's use, concurrent callers
and fork. Runs once, on the active SIMD target; test_threads_results.py checks that
every setting gives the same results on every target.

Speed is measured by the benchmarks (bench/RESULTS.md), never here.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import warnings

import fastsoftmax as fs
import numpy as np
import pytest
from test_threads_results import cases, flat


@pytest.fixture(params=["active"], autouse=True)
def simd(request):  # the results on every target: test_threads_results.py
    return request.param


@pytest.fixture(autouse=True)
def restore_threads():
    before = fs.get_num_threads()
    yield
    fs.set_num_threads(before)


# ------------------------------------------------------------------ setting --

# The CPUs this process may run on, in a child's code: its affinity mask where the OS has
# one (Linux), else every CPU (macOS), as the default number of threads is.
CPUS = "(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count())"


def test_default_is_the_cpus_this_process_may_use():
    code = f"import fastsoftmax as fs, os; print(fs.get_num_threads(), {CPUS})"
    env = {k: v for k, v in os.environ.items() if k != "FASTSOFTMAX_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    got, cpus = out.stdout.split()
    assert got == cpus


def test_environment_variable_sets_the_default():
    code = "import fastsoftmax as fs; print(fs.get_num_threads())"
    env = dict(os.environ, FASTSOFTMAX_NUM_THREADS="3")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "3"


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", str(2**70)])
def test_bad_environment_variable_warns_and_keeps_the_default(value):
    code = (
        "import warnings, os\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import fastsoftmax as fs\n"
        f"print(fs.get_num_threads() == {CPUS})\n"
        "print('|'.join(str(x.message) for x in w))\n"
    )
    env = dict(os.environ, FASTSOFTMAX_NUM_THREADS=value)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    default_kept, messages = out.stdout.splitlines()
    assert default_kept == "True"
    assert f"FASTSOFTMAX_NUM_THREADS={value!r}" in messages


def test_set_and_get():
    fs.set_num_threads(3)
    assert fs.get_num_threads() == 3
    fs.set_num_threads(np.int64(1))
    assert fs.get_num_threads() == 1


@pytest.mark.parametrize(
    ("value", "error", "text"),
    [
        (0, ValueError, "at least 1, got 0"),
        (-4, ValueError, "at least 1, got -4"),
        (2**70, ValueError, f"at most {2**63 - 1}, got {2**70}"),
        (1.5, TypeError, "got 1.5 (float)"),
        ("2", TypeError, "got '2' (str)"),
        (True, TypeError, "got True (bool)"),
        (None, TypeError, "got None"),
    ],
)
def test_bad_settings_raise_and_change_nothing(value, error, text):
    fs.set_num_threads(2)
    with pytest.raises(error) as info:
        fs.set_num_threads(value)
    assert text in str(info.value)
    with pytest.raises(error), fs.use_threads(value):
        pass  # pragma: no cover
    assert fs.get_num_threads() == 2


def test_use_threads_restores_the_setting_even_on_error():
    fs.set_num_threads(2)
    with fs.use_threads(1):
        assert fs.get_num_threads() == 1
    assert fs.get_num_threads() == 2

    def fail_inside() -> None:
        with fs.use_threads(4):
            assert fs.get_num_threads() == 4
            raise KeyError("inside")

    with pytest.raises(KeyError):
        fail_inside()
    assert fs.get_num_threads() == 2


def _threads_after(code: str) -> int:
    """The number of OS threads of a fresh process after running `code` (fastsoftmax imported)."""
    script = f"import os, numpy as np, fastsoftmax as fs\n{code}\nprint(len(os.listdir('/proc/self/task')))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_small_inputs_stay_on_the_calling_thread_and_large_ones_use_the_pool():
    base = _threads_after("fs.set_num_threads(4)")
    small = _threads_after(
        "fs.set_num_threads(4); x = np.ones((1000, 10), np.float32); fs.softmax(x)"
    )
    large = _threads_after(
        "fs.set_num_threads(4); x = np.ones((4096, 128), np.float32); fs.softmax(x)"
    )
    single = _threads_after(
        "fs.set_num_threads(1); x = np.ones((4096, 128), np.float32); fs.softmax(x)"
    )
    assert small == base
    assert single == base
    assert large == base + 3  # the caller and three helpers


# ------------------------------------------------------- concurrency, fork --


def test_concurrent_callers_get_the_serial_results():
    """Callers that find the pool busy run on their own threads: same results."""
    work = cases(np.random.default_rng(0))
    fs.set_num_threads(1)
    serial = {name: flat(f()) for name, f in work}
    fs.set_num_threads(2)
    failures: list[str] = []
    barrier = threading.Barrier(4)

    def caller(offset: int) -> None:
        barrier.wait()
        for i in range(2 * len(work)):
            name, f = work[(i + offset) % len(work)]
            for got, want in zip(flat(f()), serial[name]):
                if not np.array_equal(got, want, equal_nan=True):
                    failures.append(name)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def _child_softmax(x: np.ndarray) -> np.ndarray:
    return fs.softmax(x)


def test_a_forked_child_computes_with_threads():
    x = np.random.default_rng(1).standard_normal((400, 1000)).astype(np.float32)
    fs.set_num_threads(2)
    want = fs.softmax(x)  # the parent's pool is running before the fork
    with warnings.catch_warnings():
        # Python >= 3.12 warns about forking a process that has threads: that is this test
        warnings.simplefilter("ignore", DeprecationWarning)
        # and JAX, once test_framework_arrays.py has imported it, warns at every fork (the
        # children here do not use JAX)
        warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(2) as pool:
            results = pool.map_async(_child_softmax, [x, x[:200], x[1:]]).get(timeout=60)
    np.testing.assert_array_equal(results[0], want)
    np.testing.assert_array_equal(results[1], want[:200])
    np.testing.assert_array_equal(results[2], want[1:])


def test_show_config_reports_the_thread_setting(capsys):
    with fs.use_threads(3):
        fs.show_config()
    line = next(x for x in capsys.readouterr().out.splitlines() if "threads" in x)
    assert line.split(":", 1)[1].split()[0] == "3", line
