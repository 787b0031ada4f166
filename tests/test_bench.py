"""The benchmarks: ``python -m fastsoftmax`` (the main job) and ``python -m fastsoftmax.bench``.

They run, every implementation they time computes the right thing (its error
against the reference is small), and the suite writes its JSON file and PNG.
No timing is asserted (the machines are shared and noisy); the figures are in
bench/RESULTS.md.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from functools import partial

import fastsoftmax
import numpy as np
import pytest
from fastsoftmax import bench
from fastsoftmax.bench import accuracy, numpy_impls, peers, report, suite

TINY = [(8, 10), (3, 2000)]


@pytest.fixture(params=["active"], autouse=True)
def simd(request):  # once, on the active target: the kernels themselves are tested elsewhere
    return request.param


def tiny_settings(**kwargs) -> suite.Settings:
    defaults = {
        "shapes": TINY,
        "dtypes": ["float32", "float64"],
        "ops": list(peers.OPS),
        "threads": [1],
        "peers": ["numpy", "numpy-naive", "scipy"],
        "rounds": 1,
        "min_time": 0.0,
        "copy_bytes": 1 << 20,
        "progress": False,
    }
    return suite.Settings(**{**defaults, **kwargs})


def test_every_op_and_numpy_peer_with_small_errors():
    result = suite.run(tiny_settings(), echo=lambda _: None)
    rows = result["results"]
    assert {(r["dtype"], tuple(r["shape"]), r["op"]) for r in rows} == {
        (d, s, op) for d in ("float32", "float64") for s in TINY for op in peers.OPS
    }
    for r in rows:
        tol = 1e-5 if r["dtype"] == "float32" else 1e-12
        assert r["max_error"] < tol, r
        assert r["max_error_eps"] == pytest.approx(r["max_error"] / np.finfo(r["dtype"]).eps)
        assert r["time_s"] > 0
        assert r["GBps"] > 0
        assert r["copy_fraction"] > 0
        if r["peer"] == "fastsoftmax":
            assert r["speedup"] is None
        else:  # compared with fastsoftmax's variant of the same output convention
            assert r["speedup"] > 0
            if r["op"] not in ("logsumexp", "cross_entropy"):
                want = "fastsoftmax out=" if r["peer"] == "numpy" else "fastsoftmax"
                assert r["speedup_against"] == want, r
    scipy_ops = {r["op"] for r in rows if r["peer"] == "scipy"}
    assert scipy_ops == {"softmax", "log_softmax", "logsumexp"}
    assert result["copy_bandwidth"]["GBps"] > 0


def test_a_failing_peer_is_noted_and_skipped(monkeypatch):
    class Broken(peers.Peer):
        name = "broken"
        module = "numpy"

        def build(self, case):
            def fail():
                raise RuntimeError("no such kernel")

            return [peers.Impl(self.name, fail, fail)]

    class HalfInstalled(peers.Peer):
        name = "half"
        module = "numpy"

        def setup(self, mod):
            raise AttributeError("module has no attribute 'softmax'")

    class NoBfloat16(peers.Peer):  # its arrays cannot hold the case's dtype
        name = "nobf16"
        module = "numpy"

        def build(self, case):
            if case.x.dtype == accuracy.numpy_dtype("bfloat16"):
                raise TypeError("cannot convert bfloat16")
            call = partial(numpy_impls.naive_softmax, case.x)
            return [peers.Impl(self.name, call, call)]

    monkeypatch.setitem(peers.PEERS, "broken", Broken)
    monkeypatch.setitem(peers.PEERS, "half", HalfInstalled)
    monkeypatch.setitem(peers.PEERS, "nobf16", NoBfloat16)
    settings = tiny_settings(shapes=[(8, 10)], dtypes=["float32", "bfloat16"], ops=["softmax"])
    settings.peers = ["numpy", "broken", "half", "nobf16"]
    result = suite.run(settings, echo=lambda _: None)
    peers_of = {
        d: {r["peer"] for r in result["results"] if r["dtype"] == d}
        for d in ("float32", "bfloat16")
    }
    assert peers_of == {
        "float32": {"fastsoftmax", "numpy", "nobf16"},
        "bfloat16": {"fastsoftmax", "numpy"},
    }
    notes = "\n".join(result["notes"])
    assert "RuntimeError: no such kernel" in notes
    assert "half: failed to load (AttributeError" in notes
    assert "nobf16, softmax bfloat16 8x10 threads=1: TypeError: cannot convert bfloat16" in notes


def test_traffic_counts_bytes_read_and_written():
    x = np.zeros((4, 10), np.float32)
    labels = np.zeros(4, np.int64)
    nbytes = {op: peers.Case(op, x, x, labels).traffic_bytes() for op in peers.OPS}
    assert nbytes["softmax"] == 2 * 160
    assert nbytes["logsumexp"] == 160 + 16
    assert nbytes["softmax_backward"] == 3 * 160
    assert nbytes["cross_entropy"] == 160 + 32
    assert nbytes["cross_entropy_grad"] == 2 * 160 + 32


def test_numpy_cross_entropy_matches_the_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 30)).astype(np.float32)
    y = rng.integers(0, 30, 50)
    g = np.empty_like(x)
    m = np.empty((50, 1), np.float32)
    loss, grad = bench.numpy_cross_entropy(x, y, g, m, np.empty_like(m))
    assert abs(loss - bench.reference_cross_entropy(x, y)) < 1e-6
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(50), y] -= 1
    np.testing.assert_allclose(grad, p / 50, atol=1e-7)
    naive_loss, naive_grad = numpy_impls.naive_cross_entropy(x, y)
    assert naive_loss == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(naive_grad, grad, atol=1e-7)


def test_main_job_opens_with_a_summary_then_the_table(tmp_path, capsys):
    out_json = tmp_path / "r.json"
    argv = ["--quick", "--no-default-shapes", "--shape", "16x10", "--shape", "3x2000"]
    assert bench.main_job([*argv, "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out_json.read_text())
    rows = doc["results"]
    lines = out.splitlines()
    # (one thread, the machine's all where it has one CPU: "1 thread (all)")
    table = next(i for i, line in enumerate(lines) if line.startswith("== float32, 1 thread"))
    head = "\n".join(lines[:table])  # the summary: everything before the table
    assert lines[0].startswith(f"fastsoftmax {doc['peers']['fastsoftmax']['version']}, ")
    assert f"SIMD target {fastsoftmax.simd_target()}, 1 thread " in lines[0]
    assert f"float32: {len(bench.DEFAULT_OPS) * 2} cases in " in lines[0]
    speedups = sorted(r["speedup"] for r in rows if r["peer"] == "numpy")
    least, most = report.fmt_speedup(speedups[0]), report.fmt_speedup(speedups[-1])
    assert f"speed-up over numpy: {least} to {most} (median " in head
    fs_worst = max((r for r in rows if r["peer"] == "fastsoftmax"), key=lambda r: r["max_error"])
    case = f"{fs_worst['op']} {'x'.join(map(str, fs_worst['shape']))}"
    assert f"worst max error:     fastsoftmax {fs_worst['max_error']:.1e} = " in head
    assert f" eps ({case})" in head
    assert "numpy       " in head  # numpy's worst error, aligned under fastsoftmax's
    assert table <= 6  # a short summary
    rest = "\n".join(lines[table:])
    assert "cross_entropy_grad" in rest
    assert "fastsoftmax out=" in rest
    # the definitions after the table
    assert rest.index("fastsoftmax out=") < rest.index("medians of 3 interleaved rounds")


def test_main_job_needs_only_numpy(tmp_path, monkeypatch, capsys):
    """With the optional libraries unimportable: notes instead of failures, no PNG."""
    optional = ("scipy", "torch", "jax", "tensorflow", "matplotlib", "tqdm")
    for name in [*optional, *(m for m in sys.modules if m.split(".")[0] in optional)]:
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    argv = ["--quick", "--no-default-shapes", "--shape", "16x10", "--peers", "all"]
    argv += ["--ops", "softmax", "--json", str(out_json), "--png", str(out_png)]
    assert bench.main_job(argv) == 0
    out = capsys.readouterr().out
    for name in ("scipy", "torch", "jax", "tensorflow"):
        assert f"note: {name}: not installed" in out
    assert "matplotlib is not installed" in out
    assert not out_png.exists()
    doc = json.loads(out_json.read_text())
    assert {r["peer"] for r in doc["results"]} == {"fastsoftmax", "numpy", "numpy-naive"}


def test_main_job_progress_without_tqdm_in_a_log(monkeypatch, capsys):
    """stderr not a terminal (capsys): a few plain lines, whether or not tqdm is installed."""
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import raises ImportError
    argv = ["--quick", "--no-default-shapes", "--shape", "16x10", "--shape", "3x2000"]
    assert bench.main_job(argv) == 0
    captured = capsys.readouterr()
    cases = 2 * len(bench.DEFAULT_OPS)
    lines = captured.err.splitlines()
    assert lines[0] == f"timing {cases} cases ..."
    assert lines[-1].startswith(f"{cases}/{cases} cases timed, ")
    assert len(lines) == 5  # the start and each quarter
    assert "\r" not in captured.err
    assert "cases timed" not in captured.out
    assert bench.main_job([*argv, "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_without_tqdm_on_a_terminal(monkeypatch):
    """One line, rewritten in place for each case, ended by a newline."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    settings = tiny_settings(shapes=[(8, 10)], ops=["softmax", "logsumexp"], progress=True)
    suite.run(settings, echo=lambda _: None)
    text = terminal.getvalue()
    assert text.endswith("\n")
    assert text.count("\n") == 1
    states = text[:-1].split("\r")[1:]
    assert states[0].startswith("[0/4] ")
    assert states[0].endswith("  softmax float32 8x10 threads=1")
    assert any(s.startswith("[2/4] ") and "logsumexp float32 8x10" in s for s in states)
    assert states[-1].startswith("4/4 cases timed in ")
    for before, after in zip(states, states[1:]):  # a shorter line blanks the longer one
        assert len(after) >= len(before.rstrip())


def test_summary_counts_a_nan_error_as_the_worst():
    result = suite.run(tiny_settings(shapes=[(8, 10)], peers=["numpy"]), echo=lambda _: None)
    doc = {**result, "machine": {"simd_target": "avx2", "usable_cpus": 4}}
    rows = doc["results"]
    bad = next(r for r in rows if r["peer"] == "numpy" and r["op"] == "logsumexp")  # float32
    bad["max_error"] = bad["max_error_eps"] = float("nan")
    text = report.summary(doc)
    assert text.splitlines()[0].startswith("fastsoftmax ")
    assert "SIMD target avx2, 1 thread (of 4 CPUs), float32, float64: " in text
    assert "numpy       nan = nan eps (logsumexp 8x10 float32)" in text
    speedups = [r["speedup"] for r in rows if r["peer"] == "numpy"]
    assert f"speed-up over numpy: {report.fmt_speedup(min(speedups))} to " in text


def test_bad_options_are_refused(capsys):
    for argv in (["--shape", "10"], ["--ops", "softmin"], ["--peers", "mxnet"], ["--threads", "0"]):
        with pytest.raises(SystemExit):
            bench.main(argv)
    assert "512x50257" in capsys.readouterr().err


def test_quick_suite_writes_json_and_png(tmp_path):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    cmd = [sys.executable, "-m", "fastsoftmax.bench", "--quick"]
    cmd += ["--json", str(out_json), "--png", str(out_png)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "SIMD target" in proc.stdout

    doc = json.loads(out_json.read_text())
    for key in ("machine", "versions", "settings", "peers", "copy_bandwidth", "results"):
        assert key in doc
    machine = doc["machine"]
    for key in ("cpu_model", "simd_target", "usable_cpus", "logical_cpus"):
        assert key in machine
    assert doc["versions"]["numpy"] == np.__version__
    assert doc["copy_bandwidth"]["GBps"] > 0
    assert set(doc["settings"]["ops"]) == set(bench.DEFAULT_OPS)
    assert set(doc["settings"]["threads"]) == {1, suite.all_threads()}
    results = doc["results"]
    assert {r["op"] for r in results} == set(bench.DEFAULT_OPS)
    assert {"fastsoftmax", "numpy", "numpy-naive"} <= {r["peer"] for r in results}
    for r in results:
        for key in ("shape", "dtype", "threads", "impl", "time_s", "GBps", "copy_fraction"):
            assert key in r
        assert r["max_error"] < 1e-4, r  # every peer computes the same thing (float32)
    for r in results:  # the peers' own libraries were really used where installed
        assert r["peer"] in doc["peers"]

    png = out_png.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = pytest.importorskip("matplotlib.image").imread(out_png)
    assert image.ndim == 3
    assert image.shape[0] > 100


def test_error_measures_count_subnormal_results_against_tiny():
    """A correctly rounded float16 softmax scores at most 0.5 eps even where it is subnormal;
    one that flushes subnormal outputs to zero does not."""
    assert accuracy.eps("bfloat16") == 2.0**-7
    assert accuracy.eps("float16") == 2.0**-10
    assert accuracy.eps("float32") == 2.0**-23
    assert accuracy.tiny("float16") == 2.0**-14
    assert accuracy.tiny("bfloat16") == 2.0**-126
    x = np.array([[0.0, -10.0, -12.0, -15.0, -20.0, -30.0]], np.float16)
    ref = accuracy.Reference("softmax", x)
    assert ref.array is not None
    rounded = ref.array.astype(np.float16)  # NumPy rounds float64 to float16 once
    assert 0 < rounded[0, 3] < accuracy.tiny("float16")  # a subnormal output
    assert accuracy.in_eps(ref.error(rounded), "float16") <= 0.5 + 1e-9
    flushed = np.where(rounded < accuracy.tiny("float16"), 0, rounded).astype(np.float16)
    assert accuracy.in_eps(ref.error(flushed), "float16") > 100


def _settings_of(monkeypatch, argv, main=bench.main):
    """The suite.Settings the command line builds (the suite itself does not run)."""
    seen = []

    class Stop(Exception):
        pass

    def run(settings):
        seen.append(settings)
        raise Stop

    monkeypatch.setattr(suite, "run", run)
    with pytest.raises(Stop):
        main(argv)
    return seen[0]


def test_cli_timing(monkeypatch):
    """The main job: every default case, with the suite's rounds but shorter samples and a
    smaller copy (about 12 s instead of 29 s); the suite as before; options win."""
    job = _settings_of(monkeypatch, [], bench.main_job)
    assert job.shapes == list(bench.DEFAULT_SHAPES)
    assert job.ops == list(bench.DEFAULT_OPS)
    assert (job.dtypes, job.threads, job.peers) == (["float32"], [1], ["numpy"])
    assert (job.rounds, job.min_time, job.copy_bytes) == (7, 0.005, 64 << 20)
    suite_run = _settings_of(monkeypatch, [])
    assert (suite_run.rounds, suite_run.min_time, suite_run.copy_bytes) == (7, 0.02, 256 << 20)
    for main in (bench.main, bench.main_job):
        quick = _settings_of(monkeypatch, ["--quick"], main)
        assert (quick.rounds, quick.min_time, quick.copy_bytes) == (3, 0.002, 64 << 20)
    chosen = _settings_of(monkeypatch, ["--rounds", "9", "--min-time", "0.02"], bench.main_job)
    assert (chosen.rounds, chosen.min_time) == (9, 0.02)


def test_cli_dtypes(monkeypatch, capsys):
    assert _settings_of(monkeypatch, []).dtypes == ["float32", "float64"]  # as before
    assert _settings_of(monkeypatch, ["--quick"]).dtypes == ["float32"]
    assert _settings_of(monkeypatch, [], bench.main_job).dtypes == ["float32"]
    half = _settings_of(monkeypatch, ["--dtype", "bfloat16, float16"])
    assert half.dtypes == ["bfloat16", "float16"]
    everything = _settings_of(monkeypatch, ["--quick", "--dtype", "all"])
    assert everything.dtypes == ["float32", "float64", "float16", "bfloat16"]
    with pytest.raises(SystemExit):
        bench.main(["--dtype", "float8"])
    assert "bfloat16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--help"])
    assert "--dtype" in capsys.readouterr().out


def test_half_precision_inputs():
    for name in ("bfloat16", "float16"):
        inputs = suite.make_inputs((8, 10), name)
        assert str(inputs["x"].dtype) == name
        assert str(inputs["grad"].dtype) == name
        assert inputs["labels"].dtype == np.int64
        case, _ = suite.make_case("softmax_backward", inputs)
        assert str(case.x.dtype) == name  # the forward output y, rounded to the dtype
        assert case.traffic_bytes() == 3 * 8 * 10 * 2


@pytest.mark.parametrize(
    "peer_names",
    [["numpy", "numpy-naive", "scipy"], pytest.param(["torch"], marks=pytest.mark.peers)],
)
def test_half_precision_rows(peer_names):
    if "torch" in peer_names:
        pytest.importorskip("torch")
    dtypes = ["bfloat16", "float16"]
    result = suite.run(tiny_settings(dtypes=dtypes, peers=peer_names), echo=lambda _: None)
    assert result["notes"] == []
    rows = result["results"]
    assert {(r["dtype"], tuple(r["shape"]), r["op"]) for r in rows} == {
        (d, s, op) for d in dtypes for s in TINY for op in peers.OPS
    }
    assert {r["peer"] for r in rows} == {"fastsoftmax", *peer_names}
    for r in rows:
        assert np.isfinite(r["time_s"]), r
        assert r["time_s"] > 0
        assert np.isfinite(r["GBps"]), r
        assert r["GBps"] > 0
        if r["op"] in ("softmax", "log_softmax"):  # 2-byte elements, read and written
            assert r["bytes"] == 2 * 2 * r["shape"][0] * r["shape"][1], r
        assert np.isfinite(r["max_error"]), r
        assert r["max_error_eps"] == pytest.approx(r["max_error"] / accuracy.eps(r["dtype"]))
        # fastsoftmax is within 1 ulp; NumPy and SciPy round a float32 result once;
        # PyTorch's cross-entropy gradient goes through a rounded log_softmax (~9 eps)
        assert r["max_error_eps"] <= (32 if r["peer"] == "torch" else 1.0), r
        if r["op"] == "cross_entropy":
            assert r["result_dtype"] is None  # a loss alone
        else:
            assert r["result_dtype"] == r["dtype"], r
        if r["peer"] in ("fastsoftmax", "torch"):
            assert r["via"] is None, r  # the half-precision arrays themselves
        else:
            assert r["via"] == "float32", r


@pytest.mark.peers
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_framework_arrays_rows(framework):
    """--framework-arrays: fastsoftmax fed the peer's own arrays, timed beside it, with the
    same results as the NumPy-fed calls."""
    pytest.importorskip(framework)
    dtypes = ["float32", "bfloat16"]
    settings = tiny_settings(dtypes=dtypes, peers=[framework], framework_arrays=True)
    # (JAX's own rows run at all threads only; fastsoftmax[jax]'s at every setting)
    result = suite.run(settings, echo=lambda _: None)
    assert result["notes"] == []
    rows = result["results"]
    name = f"fastsoftmax[{framework}]"
    mine = [r for r in rows if r["peer"] == name]
    assert {(r["dtype"], tuple(r["shape"]), r["op"]) for r in mine} == {
        (d, s, op) for d in dtypes for s in TINY for op in peers.OPS
    }
    plain = {
        (r["dtype"], tuple(r["shape"]), r["op"]): r["max_error"]
        for r in rows
        if r["impl"] == "fastsoftmax"
    }
    for r in mine:
        assert r["time_s"] > 0
        # the same kernels on the same memory: the same results as the NumPy-fed call
        assert r["max_error"] == plain[(r["dtype"], tuple(r["shape"]), r["op"])], r
        assert r["speedup_against"] in ("fastsoftmax", "fastsoftmax out="), r
        assert r["speedup"] > 0
    variants = {r["impl"] for r in mine}
    if framework == "torch":  # out= a tensor, and the gradient in place into one
        assert variants == {name, f"{name} out="}
    else:  # JAX arrays are immutable
        assert variants == {name}
    assert not any(
        r["peer"] == name
        for r in suite.run(
            tiny_settings(dtypes=["float32"], peers=[framework]), echo=lambda _: None
        )["results"]
    )  # (off by default)


def test_fastsoftmax_results_in_the_requested_dtype():
    for name in ("bfloat16", "float16"):
        inputs = suite.make_inputs((8, 10), name)
        for op in peers.OPS:
            case, ref = suite.make_case(op, inputs)
            for impl in peers.FastSoftmax().build(case):
                got = impl.result()
                if op == "cross_entropy":
                    assert isinstance(got, float)
                    continue
                array = got[1] if isinstance(got, tuple) else got
                assert isinstance(array, np.ndarray)
                assert str(array.dtype) == name, (op, impl.name)
                assert accuracy.in_eps(ref.error(got), name) <= 1.0, (op, impl.name)


def test_half_precision_json_and_png(tmp_path, capsys):
    out_json, out_png = tmp_path / "half.json", tmp_path / "half.png"
    argv = ["--quick", "--no-default-shapes", "--shape", "8x10", "--dtype", "bfloat16,float16"]
    argv += ["--threads", "1", "--rounds", "1", "--peers", "numpy", "--no-progress"]
    argv += ["--ops", "softmax,logsumexp,cross_entropy_grad"]
    assert bench.main([*argv, "--json", str(out_json), "--png", str(out_png)]) == 0
    out = capsys.readouterr().out
    # (one thread, the machine's all where it has one CPU: "1 thread (all)")
    assert "== bfloat16, 1 thread" in out
    assert "== float16, 1 thread" in out
    assert "err/eps" in out
    assert "float32 (bfloat16): numpy" in " ".join(out.split())  # careful NumPy: in float32
    doc = json.loads(out_json.read_text())
    assert doc["settings"]["dtypes"] == ["bfloat16", "float16"]
    assert {r["dtype"] for r in doc["results"]} == {"bfloat16", "float16"}
    for r in doc["results"]:
        if r["op"] == "softmax":
            assert r["bytes"] == 2 * 8 * 10 * 2  # 2-byte elements, read and written
    assert out_png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
