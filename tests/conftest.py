"""Shared fixtures: every test runs once per SIMD target this CPU can run.

The autouse fixture ``simd`` is parametrized over the usable targets
(``fastsoftmax.simd_targets()``), switches the process to that target with
``_core.set_target`` before the test and restores the previous one after it,
so the test ids read ``test_name[avx512-...]``. Request ``simd`` by name to
know which target a test runs on.
"""

from __future__ import annotations

import zlib

import fastsoftmax
import numpy as np
import pytest
from fastsoftmax import _core

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
