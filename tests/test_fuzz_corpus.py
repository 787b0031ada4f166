"""Replays the fuzzer's corpus (tests/fuzz/corpus) through the fuzz target, on every SIMD target.

The corpus holds the inputs atheris kept for coverage while fuzzing
(``python tests/fuzz/fuzz_kernels.py tests/fuzz/corpus -max_total_time=600``); each one
is a call of a public function that must raise ValueError/TypeError or agree with the
references, leaving its inputs unchanged. No atheris is needed to replay them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).parent / "fuzz"
sys.path.insert(0, str(FUZZ))
import fuzz_kernels

CORPUS = sorted((FUZZ / "corpus").iterdir())


def test_the_corpus_is_there():
    assert len(CORPUS) >= 10


@pytest.mark.parametrize("path", CORPUS, ids=[p.name[:12] for p in CORPUS])
def test_corpus_input(path):
    fuzz_kernels.check(path.read_bytes())
