"""SIMD target selection: simd_targets, set_target, FASTSOFTMAX_SIMD and show_config."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import fastsoftmax as fs
import numpy as np
import pytest
from fastsoftmax import _core

KNOWN = ["avx512", "avx2", "neon", "baseline"]

# Prints what a fresh interpreter sees at import, as JSON: the warnings, the
# active target and the bytes of a softmax (to compare the kernels themselves).
PROBE = r"""
import json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastsoftmax
import numpy as np
x = np.linspace(-7.3, 5.1, 3 * 37, dtype=np.float32).reshape(3, 37) ** 3 / 11
print(json.dumps({
    "warnings": [[w.category.__name__, str(w.message)] for w in caught],
    "target": fastsoftmax.simd_target(),
    "softmax": fastsoftmax.softmax(x).tobytes().hex(),
}))
"""


def probe_input() -> np.ndarray:
    return np.linspace(-7.3, 5.1, 3 * 37, dtype=np.float32).reshape(3, 37) ** 3 / 11


def run_probe(simd_env: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FASTSOFTMAX_SIMD"}
    if simd_env is not None:
        env["FASTSOFTMAX_SIMD"] = simd_env
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"probe failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def usable_targets() -> list[str]:
    return [name for name, ok in fs.simd_targets().items() if ok]


def test_simd_targets_reports_usable_booleans():
    targets = fs.simd_targets()
    assert isinstance(targets, dict)
    assert targets, "no targets compiled"
    assert all(isinstance(v, bool) for v in targets.values())
    assert set(targets) <= set(KNOWN), f"unknown target names: {set(targets) - set(KNOWN)}"
    assert targets.get("baseline") is True, "the baseline target must always be compiled and usable"
    assert list(targets)[-1] == "baseline", "targets are listed best first"


def test_active_target_is_the_one_this_test_runs_on(simd):
    assert fs.simd_target() == simd
    assert fs.simd_target() in fs.simd_targets()
    assert fs.simd_targets()[fs.simd_target()] is True


def test_set_target_switches_every_usable_target_and_back(simd):
    for name in usable_targets():
        _core.set_target(name)
        assert fs.simd_target() == name
    _core.set_target(simd)
    assert fs.simd_target() == simd


# never valid, plus the known targets this machine cannot use (e.g. neon on x86-64)
INVALID = ["", "AVX2", "sse4", "avx512 ", "nonsense"] + [
    n for n in KNOWN if not fs.simd_targets().get(n, False)
]


@pytest.mark.parametrize("name", INVALID)
def test_set_target_rejects_unknown_or_unusable_names(simd, name):
    with pytest.raises(ValueError, match=re.escape(f"'{name}'")):
        _core.set_target(name)
    assert fs.simd_target() == simd, "a failed set_target changed the active target"


def test_set_target_requires_a_string():
    with pytest.raises(TypeError):
        _core.set_target(None)  # type: ignore[arg-type]


def test_targets_compute_the_same_function(simd, rng):
    """Whatever the target, the results agree to rounding with the baseline's."""
    x = (rng.standard_normal((7, 1000)) * 10).astype(np.float32)
    here = fs.softmax(x), fs.log_softmax(x), fs.logsumexp(x)
    _core.set_target("baseline")
    base = fs.softmax(x), fs.log_softmax(x), fs.logsumexp(x)
    _core.set_target(simd)
    np.testing.assert_allclose(here[0], base[0], rtol=2e-6, atol=1e-38)
    np.testing.assert_allclose(here[1], base[1], rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(here[2], base[2], rtol=2e-6, atol=2e-6)


def test_env_var_forces_the_target(simd):
    """FASTSOFTMAX_SIMD=<target> at import: that target, no warning, and its own kernels."""
    result = run_probe(simd)
    assert result["warnings"] == [], result["warnings"]
    assert result["target"] == simd
    # the subprocess ran the same kernels as this process does on that target
    expected = fs.softmax(probe_input()).tobytes().hex()
    assert result["softmax"] == expected, "results under FASTSOFTMAX_SIMD differ from set_target's"


def test_without_env_var_the_best_usable_target_is_chosen():
    result = run_probe(None)
    assert result["warnings"] == []
    assert result["target"] == usable_targets()[0]


def test_empty_env_var_is_ignored():
    result = run_probe("")
    assert result["warnings"] == []
    assert result["target"] == usable_targets()[0]


@pytest.mark.parametrize("value", ["bogus", "AVX2"])
def test_unknown_env_var_warns_and_falls_back_to_the_best(value):
    result = run_probe(value)
    assert result["target"] == usable_targets()[0]
    categories = [c for c, _ in result["warnings"]]
    assert categories == ["RuntimeWarning"], result["warnings"]
    message = result["warnings"][0][1]
    assert value in message, message
    assert usable_targets()[0] in message, message


def test_unusable_env_var_warns_and_falls_back_to_the_best():
    unusable = [n for n in KNOWN if not fs.simd_targets().get(n, False)]
    if not unusable:
        pytest.skip("every known target is usable here")
    result = run_probe(unusable[0])
    assert result["target"] == usable_targets()[0]
    assert [c for c, _ in result["warnings"]] == ["RuntimeWarning"], result["warnings"]
    assert unusable[0] in result["warnings"][0][1]


def test_show_config_prints_the_active_target(simd, capsys):
    fs.show_config()
    text = capsys.readouterr().out
    active = [line for line in text.splitlines() if "active SIMD" in line]
    assert len(active) == 1, text
    assert active[0].split(":", 1)[1].strip() == simd, text
    # every compiled target is listed, the active one marked
    listed = {}
    for line in text.splitlines():
        words = line.split()
        marked = bool(words) and words[0] == "*"
        if marked:
            words = words[1:]
        if words and words[0] in KNOWN:
            listed[words[0]] = (marked, " ".join(words[1:]))
    for name, usable in fs.simd_targets().items():
        assert name in listed, f"target {name} not listed:\n{text}"
        marked, state = listed[name]
        assert marked == (name == simd), f"mark of {name} wrong:\n{text}"
        assert (state == "usable") == usable, f"{name}: {state}"
    assert fs.__version__ in text
    assert np.__version__ in text
    # the compiler, the flags every translation unit got and each target's own
    # (-ffp-contract=off among them where the compiler takes it: the kernels place their FMAs)
    info = _core.build_info()
    assert f"compiler    : {info['compiler']} ({info['build_type']})" in text, text
    flags = [line for line in text.splitlines() if line.startswith("  cxx flags")]
    assert len(flags) == 1, text
    assert "-std=c++17" in flags[0], text
    per_target = [line for line in text.splitlines() if line.startswith("  target flags")]
    assert len(per_target) == 1, text
    for name in fs.simd_targets():
        assert f"{name}: [" in per_target[0], text
    if info["compiler"].startswith(("GNU", "Clang", "AppleClang")):
        assert per_target[0].count("-ffp-contract=off") == len(fs.simd_targets()), text


def test_the_extension_was_built_from_this_version():
    """One source of the version: pyproject.toml, read by the build (CMake) and by the
    installed metadata that ``__version__`` comes from; a stale extension would differ."""
    assert _core.build_info()["version"] == fs.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?(a|b|rc|dev|post)\d+)*", fs.__version__)


def test_the_changelog_opens_with_this_version():
    changelog = Path(__file__).resolve().parents[1] / "CHANGELOG.md"
    headings = re.findall(r"^## (\S+)", changelog.read_text(encoding="utf-8"), re.MULTILINE)
    assert headings, "CHANGELOG.md has no version heading"
    assert headings[0] == fs.__version__, f"newest entry {headings[0]}, package {fs.__version__}"
