"""fastsoftmax: SIMD softmax, log_softmax, logsumexp, cross-entropy, entropy and KL divergence.

The compiled kernels live in the private module ``fastsoftmax._core``; use the
functions exported here.
"""

from __future__ import annotations

from importlib import metadata as _metadata

try:
    from . import _core  # noqa: F401  (fail early, with a helpful message)
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "fastsoftmax's compiled extension (fastsoftmax._core) could not be imported: "
        f"{exc}. Reinstall with `pip install .` from a source checkout, or check that "
        "the wheel matches this Python and platform."
    ) from exc

from ._api import (
    log_softmax,
    log_softmax_backward,
    logsumexp,
    softmax,
    softmax_backward,
)
from ._config import show_config, simd_target, simd_targets
from ._cross_entropy import cross_entropy, cross_entropy_backward
from ._divergence import entropy, kl_div
from ._linear import linear_cross_entropy
from ._parts import (
    CrossEntropyParts,
    LogsumexpParts,
    cross_entropy_from_parts,
    cross_entropy_parts,
    log_softmax_from_parts,
    logsumexp_from_parts,
    logsumexp_parts,
    merge_cross_entropy_parts,
    merge_logsumexp_parts,
    softmax_from_parts,
)
from ._sampling import sample
from ._threads import get_num_threads, set_num_threads, use_threads

try:
    __version__ = _metadata.version("fastsoftmax")
except _metadata.PackageNotFoundError:  # pragma: no cover - not installed
    __version__ = "unknown"

__all__ = [
    "CrossEntropyParts",
    "LogsumexpParts",
    "__version__",
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_from_parts",
    "cross_entropy_parts",
    "entropy",
    "get_num_threads",
    "kl_div",
    "linear_cross_entropy",
    "log_softmax",
    "log_softmax_backward",
    "log_softmax_from_parts",
    "logsumexp",
    "logsumexp_from_parts",
    "logsumexp_parts",
    "merge_cross_entropy_parts",
    "merge_logsumexp_parts",
    "sample",
    "set_num_threads",
    "show_config",
    "simd_target",
    "simd_targets",
    "softmax",
    "softmax_backward",
    "softmax_from_parts",
    "use_threads",
]
