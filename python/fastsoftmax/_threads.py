"""How many threads the kernels may use.

fastsoftmax runs its kernels on its own small thread pool (not OpenMP): a process that
forks after using it (``multiprocessing`` with the fork start method) gets a working pool
in the child, and the setting below is the only knob. The setting is process-wide, like
``torch.set_num_threads``.
"""

from __future__ import annotations

import operator
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import SupportsIndex

from . import _core

ENV_VAR = "FASTSOFTMAX_NUM_THREADS"


def _checked(n: object) -> int:
    """n as an int >= 1 (any integer type but bool), else TypeError / ValueError naming it."""
    try:
        if isinstance(n, bool):
            raise TypeError
        k = operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"the number of threads must be an integer, got {n!r} ({type(n).__name__})"
        ) from None
    if k < 1:
        raise ValueError(f"the number of threads must be at least 1, got {k}")
    if k > sys.maxsize:  # (the binding's C integer)
        raise ValueError(f"the number of threads must be at most {sys.maxsize}, got {k}")
    return k


def get_num_threads() -> int:
    """Return the number of threads a fastsoftmax call may use.

    The default is the number of CPUs this process may run on
    (``len(os.sched_getaffinity(0))``; ``os.cpu_count()`` where the OS has no affinity
    mask, as on macOS), or the value of the environment variable
    ``FASTSOFTMAX_NUM_THREADS`` when fastsoftmax was imported. Small inputs run on the
    calling thread whatever the setting: work is cut into tasks of about 65,536 elements
    (each row counting 48 more, 160 in the cross-entropy), and an input of one task
    never wakes another thread.

    Examples
    --------
    >>> import fastsoftmax as fs
    >>> fs.get_num_threads() >= 1
    True
    """
    return int(_core.num_threads())


def set_num_threads(n: SupportsIndex) -> None:
    """Set the number of threads fastsoftmax calls may use (process-wide).

    Parameters
    ----------
    n : int
        At least 1. ``1`` runs every call on its calling thread.

    Notes
    -----
    Results do not depend on the setting: the work is cut into tasks by the shape of the
    input alone, and partial sums are added in task order, so every setting gives
    bitwise-identical results. When several Python threads call fastsoftmax at once, one
    call uses the pool and the others run on their own threads.

    Examples
    --------
    >>> import fastsoftmax as fs
    >>> before = fs.get_num_threads()
    >>> fs.set_num_threads(2)
    >>> fs.get_num_threads()
    2
    >>> fs.set_num_threads(before)  # (restore the setting)
    """
    _core.set_num_threads(_checked(n))


@contextmanager
def use_threads(n: SupportsIndex) -> Iterator[None]:
    """Context manager: use ``n`` threads inside the ``with`` block, then restore the setting.

    The setting is process-wide: other Python threads see it too while the block runs.

    Parameters
    ----------
    n : int
        At least 1, as for :func:`set_num_threads`.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> with fs.use_threads(1):
    ...     fs.get_num_threads()
    1
    >>> x = np.random.default_rng(0).standard_normal((64, 4096))
    >>> with fs.use_threads(1):
    ...     one = fs.softmax(x)
    >>> with fs.use_threads(4):
    ...     four = fs.softmax(x)
    >>> np.array_equal(one, four)  # results do not depend on the setting
    True
    """
    n = _checked(n)
    previous = get_num_threads()
    _core.set_num_threads(n)
    try:
        yield
    finally:
        _core.set_num_threads(previous)


def _from_environment() -> None:
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return
    try:
        n = int(value)
        if not 1 <= n <= sys.maxsize:
            raise ValueError
    except ValueError:
        warnings.warn(
            f"fastsoftmax: {ENV_VAR}={value!r} is not a positive integer up to {sys.maxsize}; "
            f"using {get_num_threads()} threads",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    _core.set_num_threads(n)


_from_environment()
