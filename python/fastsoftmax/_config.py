"""Which SIMD target runs, and how this build was made."""

from __future__ import annotations

import os
import platform
import sys
import warnings
from importlib import metadata as _metadata

import numpy as np

from . import _core

_warning = _core.env_warning()
if _warning:
    warnings.warn(f"fastsoftmax: {_warning}", RuntimeWarning, stacklevel=2)


def simd_target() -> str:
    """Return the name of the SIMD target the kernels run on.

    One of ``"avx512"``, ``"avx2"``, ``"neon"`` or ``"baseline"``: the best one
    this CPU supports, unless the environment variable ``FASTSOFTMAX_SIMD``
    named another (supported) one when fastsoftmax was imported.

    Examples
    --------
    >>> import fastsoftmax as fs
    >>> fs.simd_targets()[fs.simd_target()]  # compiled, and usable on this CPU
    True
    >>> fs.simd_target()  # doctest: +SKIP
    'avx512'
    """
    return _core.simd_target()


def simd_targets() -> dict[str, bool]:
    """Return ``{name: usable}`` for every target compiled into this build, best first.

    A target is usable when the CPU (and OS) can run it.

    Examples
    --------
    >>> import fastsoftmax as fs
    >>> targets = fs.simd_targets()
    >>> list(targets)[-1], targets["baseline"]  # the portable fallback: always there
    ('baseline', True)
    >>> targets  # doctest: +SKIP
    {'avx512': True, 'avx2': True, 'baseline': True}
    """
    return {name: supported for name, compiled, supported in _core.targets() if compiled}


def show_config() -> None:
    """Print the SIMD targets, the one in use, and how the extension was built.

    Like :func:`numpy.show_config`: the text is for people, not for parsing. It names
    the version, the compiler, the base flags of every file (the compiler's flags for the
    build type and the C++ standard) and each SIMD target's own flags.

    Examples
    --------
    >>> import fastsoftmax as fs
    >>> fs.show_config()  # doctest: +ELLIPSIS
    fastsoftmax ...
      compiler    : ...
      cxx flags   : ...
      active SIMD : ...
      targets     :
    ...
      target flags: ...
    """
    info = _core.build_info()
    lines = [
        f"fastsoftmax {_metadata.version('fastsoftmax')}",
        f"  python      : {sys.version.split()[0]} ({platform.machine()})",
        f"  numpy       : {np.__version__}",
        f"  compiler    : {info['compiler']} ({info['build_type']})",
        f"  cxx flags   : {info['cxx_flags']}",
        f"  active SIMD : {simd_target()}",
        f"  FASTSOFTMAX_SIMD={os.environ.get('FASTSOFTMAX_SIMD', '')!r}",
        f"  threads     : {_core.num_threads()} (of {_core.default_num_threads()} CPUs)",
        f"  FASTSOFTMAX_NUM_THREADS={os.environ.get('FASTSOFTMAX_NUM_THREADS', '')!r}",
        "  targets     :",
    ]
    for name, compiled, supported in _core.targets():
        state = (
            "not compiled"
            if not compiled
            else ("usable" if supported else "not supported by this CPU")
        )
        mark = "*" if name == simd_target() else " "
        lines.append(f"   {mark} {name:<9} {state}")
    lines.append(f"  target flags: {info['target_flags']}")
    print("\n".join(lines))
