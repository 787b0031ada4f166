"""Every result is bitwise what the recorded commit gave, on every SIMD target.

The cases (every public function, dtype, layout, row lengths around every kernel
threshold, special values) are in ``recorded_cases.py``; the hashes of their outputs per
target, with the commit and compiler they came from, in ``data/recorded_outputs.json``.
A case is skipped where the recording has no entry for this machine's architecture or for
the active target. Every NaN counts as ``np.nan``: its sign and payload bits change with
the compiler's choices, not only with the source (see ``recorded_cases.py``);
``FASTSOFTMAX_TEST_NAN_BITS=1`` compares them too. On a failure, ``--compare`` (see
``recorded_cases.py``'s docstring) against outputs saved from the recorded commit tells
which elements differ and by how many ulp; re-recording is legitimate only for an
explained change that is at least as accurate as before.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import pytest
from fastsoftmax import _core
from recorded_cases import CASES, RECORDING, Case, describe, digest, load_recording

_RECORDED: dict[str, Any] = load_recording()
NAN_BITS = os.environ.get("FASTSOFTMAX_TEST_NAN_BITS", "") not in ("", "0")


def _check_recorded(simd: str) -> None:
    """Skip where the recording has no entry for this machine or for the active target."""
    if platform.machine() != _RECORDED["machine"]:
        pytest.skip(f"recorded on {_RECORDED['machine']}, this machine is {platform.machine()}")
    if simd not in _RECORDED["targets"]:
        pytest.skip(f"no recording for target {simd} (recorded: {_RECORDED['targets']})")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_outputs_are_bitwise_the_recorded_ones(case: Case, simd: str) -> None:
    _check_recorded(simd)
    recorded = _RECORDED["cases"].get(case.name, {}).get(simd)
    assert recorded is not None, (
        f"case {case.name!r} is not in {RECORDING.name} for {simd}: record new cases "
        "on the recorded commit (see recorded_cases.py)"
    )
    want_values, _, want_bits = recorded.partition(" ")
    outputs = case.compute()
    values_ok = digest(outputs, nan_bits=False) == want_values
    if values_ok and (not NAN_BITS or digest(outputs) == (want_bits or want_values)):
        return
    what = (
        "the values differ"
        if not values_ok
        else "only the sign or payload bits of NaNs differ (FASTSOFTMAX_TEST_NAN_BITS=1)"
    )
    info = _core.build_info()
    pytest.fail(
        f"{case.name} on target {simd}: {what}. Outputs: {describe(outputs)}. Recorded from "
        f"commit {_RECORDED['recorded_from']} built by {_RECORDED['compiler']}; this build: "
        f"{info['compiler']} ({info['build_type']}). Which elements: "
        "`python tests/recorded_cases.py --compare DIR --case NAME`"
    )


def test_the_recording_holds_exactly_the_cases(simd: str) -> None:
    """No case was dropped from the list (nor one recorded that no longer runs)."""
    _check_recorded(simd)
    recorded = {name for name, h in _RECORDED["cases"].items() if simd in h}
    names = {c.name for c in CASES}
    assert recorded == names, (
        f"on {simd}: recorded but not in CASES: {sorted(recorded - names)[:5]}; "
        f"in CASES but not recorded: {sorted(names - recorded)[:5]}"
    )
