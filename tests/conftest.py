"""Shared fixtures: every test runs once per SIMD target this CPU can run.

The autouse fixture ``simd`` is parametrized over the usable targets
(``fastsoftmax.simd_targets()``), switches the process to that target with
``_core.set_target`` before the test and restores the previous one after it,
so the test ids read ``test_name[avx512-...]``. Request ``simd`` by name to
know which target a test runs on.

The property-based tests (hypothesis) take their number of examples from the
profile named by ``HYPOTHESIS_PROFILE``: ``fastsoftmax`` (the default, sized for the
suite's time) or ``long`` (``HYPOTHESIS_MAX_EXAMPLES`` examples per test, 5000 unless
set). Both inherit hypothesis' own defaults of the environment (its ``ci`` profile,
derandomized, under CI) and have no deadline: the machines are shared and noisy.
"""

from __future__ import annotations

import os
import zlib

import fastsoftmax
import numpy as np
import pytest
from fastsoftmax import _core
from hypothesis import HealthCheck, settings

settings.register_profile(
    "fastsoftmax",
    parent=settings.default,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    parent=settings.get_profile("fastsoftmax"),
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "5000")),
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fastsoftmax"))

USABLE_TARGETS = [name for name, usable in fastsoftmax.simd_targets().items() if usable]


@pytest.fixture(params=USABLE_TARGETS, autouse=True)
def simd(request: pytest.FixtureRequest):
    """The SIMD target this test runs on (already active)."""
    original = fastsoftmax.simd_target()
    _core.set_target(request.param)
    try:
        yield request.param
    finally:
        _core.set_target(original)


@pytest.fixture
def rng(request: pytest.FixtureRequest, simd: str) -> np.random.Generator:
    """A generator seeded from the test id without the target: the same data on every target."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.replace(simd, "").encode()))
