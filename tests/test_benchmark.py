"""The `fastgan bench` harness itself, on tiny sizes."""

import json

import pytest
import torch

from fastgan.benchmark import Case, Settings, cases as registry, run
from fastgan.benchmark import report
from fastgan.benchmark.cli import main


def _inputs(device, dtype, layout, size, gen):
    x = torch.randn((2, 3, 4, 5), generator=gen).to(device=device, dtype=dtype)
    return (x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x,)


def _case(seen=None, broken=False):
    def good(x):
        if seen is not None:
            seen.append(x)
        return torch.tanh(x) * 2

    def bad(x):
        return torch.tanh(x) * 2 + 1e-2

    return Case(
        name="toy", group="op", description="tanh * 2", make_inputs=_inputs,
        impls={"fastgan": bad if broken else good, "reference": good, "eager": lambda x: 2 * torch.tanh(x)},
        memory_bound=True, min_bytes=lambda inp, out: inp[0].nbytes + out.nbytes,
    )


SMALL = dict(size="tiny", rounds=3, warmup=1, dtypes=("float32",), layouts=("contiguous",))


def test_failed_case_is_reported_and_not_timed():
    results = run([_case(broken=True)], Settings(**SMALL))
    by_impl = {(r.impl, r.mode): r for r in results}
    for mode in ("fwd", "fwd+bwd"):
        bad = by_impl[("fastgan", mode)]
        assert bad.status == "failed" and "differs from the float64 reference" in bad.message
        assert bad.stats == {}
        assert by_impl[("eager", mode)].status == "ok" and by_impl[("eager", mode)].stats["rounds"] == 3
    text = report.text_table(results)
    assert "FAILED" in text and "not timed" in text


def test_inputs_rotate_and_are_random():
    seen = []
    run([_case(seen)], Settings(**SMALL, modes=("fwd",), impls=("fastgan",)))
    ptrs = {t.data_ptr() for t in seen}
    assert len(ptrs) >= 3  # the check's copy plus three rotating sets
    assert all(t.abs().sum() > 0 for t in seen)


def test_gradients_are_checked():
    case = _case()
    case.impls["fastgan"] = lambda x: torch.tanh(x.detach()) * 2 + 0 * x  # right value, wrong gradient
    results = run([case], Settings(**SMALL, modes=("fwd+bwd",)))
    r = next(r for r in results if r.impl == "fastgan")
    assert r.status == "failed" and "grad of input 0" in r.message


def test_bandwidth_and_saved_memory():
    results = run([_case()], Settings(**SMALL))
    fwd = next(r for r in results if r.impl == "fastgan" and r.mode == "fwd")
    assert fwd.bytes_moved == 2 * 2 * 3 * 4 * 5 * 4 and fwd.bandwidth_gbs > 0 and fwd.copy_gbs > 0
    bwd = next(r for r in results if r.impl == "fastgan" and r.mode == "fwd+bwd")
    assert bwd.saved_bytes == 2 * 3 * 4 * 5 * 4  # tanh saves its output


def test_compare_uses_the_spread():
    def doc(median, q1, q3):
        r = {"key": "k", "status": "ok", "stats": {"median": median, "q1": q1, "q3": q3}}
        return {"format": 1, "results": [r]}

    assert report.compare(doc(10, 9, 11), doc(5, 4.5, 5.5))[0][1] == "faster"
    assert report.compare(doc(10, 9, 11), doc(20, 19, 21))[0][1] == "slower"
    assert report.compare(doc(10, 8, 12), doc(11, 9, 13))[0][1] == "same"


def test_cli_writes_json_markdown_png_and_compares(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["--ops", "bias_act", "--size", "tiny", "--rounds", "3", "--impls", "fastgan,reference,eager",
               "--dtypes", "float32", "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "bench-cpu.json").read_text())
    assert doc["machine"]["torch"] == torch.__version__ and "fastgan" in doc["machine"]
    assert {r["impl"] for r in doc["results"]} == {"fastgan", "reference", "eager"}
    assert all(r["status"] == "ok" for r in doc["results"])
    md = (out / "bench-cpu.md").read_text()
    assert md.count("| bias_act |") == 4
    assert (out / "bench-cpu.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["--compare", str(out / "bench-cpu.json"), str(out / "bench-cpu.json")]) == 0
    assert "within the measured spread" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ops", "nope"], "unknown case"),
        (["--dtypes", "int8"], "--dtypes"),
        (["--device", "cuda"] if not torch.cuda.is_available() else ["--rounds", "1"], "--"),
    ],
)
def test_cli_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_compare_rejects_other_files(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("{\"a\": 1}")
    with pytest.raises(SystemExit):
        main(["--compare", str(bad), str(bad)])
    assert "not a fastgan bench JSON" in capsys.readouterr().err


def test_every_registered_case_runs_tiny():
    results = run(registry.all_cases(), Settings(size="tiny", rounds=3, warmup=1, dtypes=("float32", "bfloat16"),
                                                 impls=("fastgan", "raw", "reference", "eager"), repeat=1))
    bad = [(r.key, r.message) for r in results if r.status != "ok"]
    assert not bad


def test_a_reference_that_raises_is_reported_not_fatal():
    case = _case()

    def boom(x):
        raise RuntimeError("no kernel for this")

    case.impls["reference"] = boom
    results = run([case], Settings(**SMALL))
    assert results and all(r.status == "error" and "no kernel for this" in r.message for r in results)


def test_implementations_take_turns_in_every_round():
    """Timing interleaves the implementations of a case, the first one rotating, so a
    machine whose speed drifts between rounds slows them alike."""
    calls = []

    def tagged(name):
        def fn(x):
            calls.append(name)
            return torch.tanh(x) * 2
        return fn

    case = _case()
    case.impls = {"fastgan": tagged("fastgan"), "reference": tagged("reference"), "eager": tagged("eager")}
    results = run([case], Settings(**{**SMALL, "rounds": 4}, modes=("fwd",)))
    assert [r.impl for r in results] == ["fastgan", "reference", "eager"]
    assert all(r.status == "ok" and r.stats["rounds"] == 4 for r in results)
    timed = calls[-12:]  # after the reference's check call, each impl's check and warm-up
    rounds = [timed[i:i + 3] for i in range(0, 12, 3)]
    assert all(sorted(r) == ["eager", "fastgan", "reference"] for r in rounds)
    assert [r[0] for r in rounds] == ["fastgan", "reference", "eager", "fastgan"]
