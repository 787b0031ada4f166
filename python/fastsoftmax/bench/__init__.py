"""Benchmarks of fastsoftmax against NumPy, SciPy, PyTorch, JAX and TensorFlow.

``python -m fastsoftmax.bench`` runs the whole comparison (``--help`` for the
options); ``python -m fastsoftmax`` runs its short default against careful
NumPy. Modules: :mod:`.numpy_impls` (the NumPy implementations),
:mod:`.accuracy` (references and error measures), :mod:`.peers` (every
implementation timed), :mod:`.timing` (interleaved medians, the copy
bandwidth), :mod:`.suite` (the run), :mod:`.report` (table, JSON, machine),
:mod:`.plot` (the PNG) and :mod:`.cli`.

Only NumPy is needed; the other libraries, matplotlib and tqdm are imported
when used and skipped with a note when missing (without tqdm, progress is a
plain line on stderr).
"""

from __future__ import annotations

from .accuracy import max_error, reference, reference_cross_entropy
from .cli import DEFAULT_OPS, DEFAULT_SHAPES, QUICK_SHAPES, main, main_job
from .numpy_impls import NUMPY_IMPLS, numpy_cross_entropy
from .peers import OPS
from .timing import copy_bandwidth, time_interleaved

__all__ = [
    "DEFAULT_OPS",
    "DEFAULT_SHAPES",
    "NUMPY_IMPLS",
    "OPS",
    "QUICK_SHAPES",
    "copy_bandwidth",
    "main",
    "main_job",
    "max_error",
    "numpy_cross_entropy",
    "reference",
    "reference_cross_entropy",
    "time_interleaved",
]
