import json
import os
import pickle
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastgan.cli import main
from tests.gan_fixtures import write_fmnist_like

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_fmnist_like(tmp_path_factory.mktemp("idx"))


TINY = ["--base-ch", "8", "--batch-size", "8", "--sample-n", "8", "--progress", "false", "--tensorboard", "false",
        "--log-every", "1"]


def test_train_sample_end_to_end(data, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--preset", "fmnist-cgan", "--data", str(data), "--out", str(out), "--steps", "2", *TINY])
    assert rc == 0
    ckpt = out / "checkpoints" / "ckpt-00000002.pt"
    assert ckpt.is_file() and (out / "samples" / "final.png").is_file()
    assert main(["sample", str(out), "--out", str(tmp_path / "grid.png"), "--grid", "8"]) == 0
    assert main(["sample", str(ckpt), "--out", str(tmp_path / "pc.png"), "--per-class", "3"]) == 0
    assert main(["sample", str(ckpt), "--out", str(tmp_path / "many"), "--n", "5"]) == 0
    from PIL import Image
    w, h = Image.open(tmp_path / "pc.png").size
    assert w < h  # 4 classes, one row each, 3 images a row
    names = sorted(p.name for p in (tmp_path / "many").iterdir())
    assert names[0] == "000000-class0.png" and len(names) == 5
    # resume auto continues to the new step count
    assert main(["train", "--preset", "fmnist-cgan", "--data", str(data), "--out", str(out), "--steps", "3", "--resume", "auto", *TINY]) == 0
    assert (out / "checkpoints" / "ckpt-00000003.pt").is_file()


def test_config_file_yaml_and_json(data, tmp_path, capsys):
    y = tmp_path / "c.yaml"
    y.write_text("steps: 7\nlr-g: 0.001\nprecision: bf16\n")
    assert main(["train", "--config", str(y), "--steps", "9", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["steps"] == 9 and cfg["lr_g"] == 0.001 and cfg["precision"] == "bf16"  # flags beat the file
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"batch_size": 4, "model": "wgan-gp"}))
    assert main(["train", "--config", str(j), "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["batch_size"] == 4


@pytest.mark.parametrize("args,msg", [
    (["train", "--steps", "x"], "invalid int value"),
    (["train", "--bogus"], "unrecognized arguments"),
    (["train", "--preset", "nope"], "invalid choice"),
    (["train", "--precision", "fp8"], "precision: expected one of"),
    (["train", "--batch-size", "0"], "batch_size: must be >= 1"),
    (["train", "--channels-last", "maybe"], "expected true/false"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_bad_arguments_are_argparse_errors(args, msg, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    assert msg in capsys.readouterr().err


def test_config_file_unknown_and_bad_keys(tmp_path, capsys):
    y = tmp_path / "c.yaml"
    y.write_text("steps: 7\nlearning_rate: 0.1\n")
    with pytest.raises(SystemExit):
        main(["train", "--config", str(y)])
    assert "unknown key(s) 'learning_rate'" in capsys.readouterr().err
    y.write_text("- a\n- b\n")
    with pytest.raises(SystemExit):
        main(["train", "--config", str(y)])
    assert "expected a mapping" in capsys.readouterr().err
    y.write_text("steps: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(SystemExit):
        main(["train", "--config", str(y)])
    assert "not valid YAML" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--config", str(tmp_path / "missing.yaml")])
    assert "cannot read config file" in capsys.readouterr().err


def test_info_eval_bench(capsys):
    assert main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "backend" in info and "extension_loaded" in info["backend"]
    import fastgan.benchmark.cli  # noqa: F401  (part of the package: an import error is a failure)
    import fastgan.metrics.cli  # noqa: F401
    for cmd in ("eval", "bench"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0 and f"usage: fastgan {cmd}" in capsys.readouterr().out


# ----------------------------------------------------------------------------- user errors
# Every subcommand reports a user error as exactly one line on stderr, "fastgan <cmd>: error: ...",
# with exit status 2 and no traceback; an unloadable checkpoint says "corrupt" or "not a fastgan
# checkpoint" and never passes on torch's advice to retry with weights_only=False.


class Payload:
    """Unpickling this runs a shell command (it touches ``marker``): what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--preset", "fmnist-dcgan", "--data", str(data), "--out", str(out), "--steps", "1", *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def bad(run_dir, tmp_path_factory):
    """name -> (path, what the error must say) for files that are not loadable fastgan checkpoints."""
    d = tmp_path_factory.mktemp("bad")
    good = run_dir / "checkpoints" / "ckpt-00000001.pt"
    files = {}

    def add(name, what, data=None, obj=None):
        path = d / f"{name}.pt"
        if obj is not None:
            torch.save(obj, path)
        else:
            path.write_bytes(data)
        files[name] = (path, what)

    add("text", "not a fastgan checkpoint", data=b"not a checkpoint")
    add("empty", "corrupt", data=b"")
    add("truncated", "corrupt", data=good.read_bytes()[:2000])
    add("foreign", "not a fastgan checkpoint", obj={"weights": torch.zeros(3)})
    add("malicious", "not a fastgan checkpoint", obj={"format": "fastgan-checkpoint-v1", "G": Payload(d / "pwned")})
    add("malicious_pickle", "not a fastgan checkpoint",  # a plain pickle, not torch.save's zip
        data=pickle.dumps({"format": "fastgan-checkpoint-v1", "G": Payload(d / "pwned")}, protocol=4))
    state = torch.load(good, weights_only=True)
    add("lacks_g", "corrupt", obj={k: v for k, v in state.items() if k != "G_ema"})
    add("bad_config", "corrupt", obj=dict(state, config=dict(state["config"], model="nope")))
    add("wrong_weights", "corrupt", obj=dict(state, config=dict(state["config"], base_ch=16)))
    yield files
    assert not (d / "pwned").exists(), "a malicious checkpoint ran code"


def run_cli(args, capsys):
    """(exit status, stderr) of main(args): argparse errors exit, the others return."""
    try:
        rc = main(args)
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


def assert_user_error(rc, err, cmd, *needles):
    assert rc == 2, (rc, err)
    assert "Traceback" not in err and "weights_only=False" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fastgan {cmd}: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


NOT_LOADABLE = ["text", "empty", "truncated", "foreign", "malicious", "malicious_pickle", "lacks_g"]


@pytest.mark.parametrize("name", NOT_LOADABLE + ["bad_config", "wrong_weights"])
def test_sample_unloadable_checkpoint(bad, name, tmp_path, capsys):
    path, what = bad[name]
    assert_user_error(*run_cli(["sample", str(path), "--out", str(tmp_path / "g.png")], capsys), "sample", str(path), what)


@pytest.mark.parametrize("name", NOT_LOADABLE + ["bad_config", "wrong_weights"])
def test_eval_unloadable_checkpoint(bad, name, capsys):
    path, what = bad[name]
    assert_user_error(*run_cli(["eval", str(path), "--device", "cpu"], capsys), "eval", str(path), what)


@pytest.mark.parametrize("name", NOT_LOADABLE)
def test_train_resume_unloadable_checkpoint(bad, name, data, tmp_path, capsys):
    path, what = bad[name]
    args = ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--resume", str(path), *TINY]
    assert_user_error(*run_cli(args, capsys), "train", str(path), what)


def test_unloadable_checkpoint_messages_say_what_is_wrong(bad, tmp_path, capsys):
    err = {}
    for name in ("text", "truncated", "malicious"):
        rc, err[name] = run_cli(["sample", str(bad[name][0]), "--out", str(tmp_path / "g.png")], capsys)
    assert "corrupt" not in err["text"] and "corrupt" not in err["malicious"]
    assert "not a fastgan checkpoint" not in err["truncated"]
    assert "refused: posix.system" in err["malicious"]
    assert "neither a PyTorch zip archive nor a pickle" in err["text"]


@pytest.mark.parametrize("args,needle", [
    (["--steps", "x"], "argument --steps: invalid int value: 'x'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--preset", "nope"], "invalid choice: 'nope'"),
    (["--batch-size", "0"], "batch_size: must be >= 1"),
    (["--device", "foo"], "device: expected 'auto' or a torch device"),
    (["--config", "/nonexistent/c.yaml"], "cannot read config file"),
    (["--resume", "/nonexistent/ckpt.pt"], "no such checkpoint file"),
    (["--data", "/nonexistent/fashion"], "no such dataset"),
])
def test_train_user_errors(args, needle, data, tmp_path, capsys):
    if "--data" not in args:
        args = ["--data", str(data), *args]
    rc, err = run_cli(["train", "--out", str(tmp_path / "r"), *TINY, *args], capsys)
    assert_user_error(rc, err, "train", needle)


def test_train_without_the_default_dataset(tmp_path, monkeypatch, capsys):
    import fastgan.data.idx as idx

    monkeypatch.setattr(idx, "DEFAULT_FASHION_MNIST", tmp_path / "fashion-mnist")
    rc, err = run_cli(["train", "--out", str(tmp_path / "r"), *TINY], capsys)
    assert_user_error(rc, err, "train", "no such dataset folder", "apt-get install dataset-fashion-mnist")


@pytest.mark.parametrize("args,needle", [
    (["--grid", "abc"], "argument --grid: invalid int value: 'abc'"),
    (["--device", "foo"], "--device: 'foo' is not a device"),
    (["--device", "cuda:99"], "--device cuda:99"),
    (["--grid", "0"], "must be positive"),
    (["--per-class", "2"], "not conditional"),
    (["--weights", "D"], "invalid choice: 'D'"),
])
def test_sample_bad_flag_values(run_dir, args, needle, tmp_path, capsys):
    rc, err = run_cli(["sample", str(run_dir), "--out", str(tmp_path / "g.png"), *args], capsys)
    assert_user_error(rc, err, "sample", needle)


def test_sample_missing_and_unwritable_files(run_dir, tmp_path, capsys):
    rc, err = run_cli(["sample", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "g.png")], capsys)
    assert_user_error(rc, err, "sample", "no such checkpoint file")
    rc, err = run_cli(["sample", str(tmp_path), "--out", str(tmp_path / "g.png")], capsys)
    assert_user_error(rc, err, "sample", "no ckpt-*.pt checkpoints")
    (tmp_path / "file").write_text("")
    rc, err = run_cli(["sample", str(run_dir), "--out", str(tmp_path / "file" / "g.png")], capsys)
    assert_user_error(rc, err, "sample")


@pytest.mark.parametrize("args,needle", [
    (["--num-gen", "x"], "argument --num-gen: invalid int value: 'x'"),
    (["--metrics", "fid_bogus"], "fid_bogus"),
    (["--device", "foo"], "--device: 'foo' is not a device"),
    (["--data", "/nonexistent/fashion"], "/nonexistent/fashion: no such dataset folder"),
    (["--reference-split", "val"], "invalid choice: 'val'"),
])
def test_eval_bad_flag_values_and_missing_dataset(run_dir, args, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rc, err = run_cli(["eval", str(run_dir), "--num-gen", "8", *args], capsys)
    assert_user_error(rc, err, "eval", needle)


def test_eval_missing_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert_user_error(*run_cli(["eval", str(tmp_path / "missing.pt")], capsys), "eval", "no such checkpoint")
    assert_user_error(*run_cli(["eval"], capsys), "eval", "give a checkpoint")
    assert_user_error(*run_cli(["eval", "--train-classifier", "--data", str(tmp_path / "nowhere")], capsys),
                      "eval", "no such dataset folder")


def test_eval_bad_inception_weights(run_dir, bad, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("malicious", "truncated"):
        path, _ = bad[name]
        rc, err = run_cli(["eval", str(run_dir), "--metrics", "fid", "--inception-weights", str(path)], capsys)
        assert_user_error(rc, err, "eval", str(path), "not a PyTorch weights file" if name == "malicious" else "corrupt")


@pytest.mark.parametrize("args,needle", [
    (["src", "dest.npy", "--resolution", "x"], "argument --resolution: invalid int value: 'x'"),
    (["src", "dest.npy"], "the following arguments are required: --resolution"),
    (["missing", "dest.npy", "--resolution", "8"], "no such image folder or zip archive"),
    (["src", "dest.npy", "--resolution", "0"], "resolution: must be >= 1"),
    (["src", "dest.txt", "--resolution", "8"], "expected a .npy or .zip path"),
    (["bad.zip", "dest.npy", "--resolution", "8"], "no images"),
])
def test_prepare_user_errors(args, needle, tmp_path, monkeypatch, capsys):
    from PIL import Image

    (tmp_path / "src").mkdir()
    Image.new("RGB", (12, 12)).save(tmp_path / "src" / "a.png")
    (tmp_path / "bad.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip archive
    monkeypatch.chdir(tmp_path)
    assert_user_error(*run_cli(["prepare", *args], capsys), "prepare", needle)


@pytest.mark.parametrize("args,needle", [
    (["--ops", "nope"], "--ops: unknown case(s) nope"),
    (["--dtypes", "float8"], "--dtypes: unknown float8"),
    (["--rounds", "2"], "--rounds: at least 3"),
    (["--threads", "0"], "--threads: at least 1"),
    (["--rounds", "many"], "argument --rounds: invalid int value: 'many'"),
    (["--compare", "missing.json", "missing.json"], "missing.json: not a readable fastgan bench JSON file"),
    (["--compare", "text.json", "text.json"], "text.json: not a readable fastgan bench JSON file"),
    (["--out", "file/sub"], "--out file/sub"),
])
def test_bench_user_errors(args, needle, tmp_path, monkeypatch, capsys):
    (tmp_path / "text.json").write_text("not json")
    (tmp_path / "file").write_text("")
    monkeypatch.chdir(tmp_path)
    # the smallest run, should a check fail to stop it (a repeated flag's last value wins)
    tiny = ["--ops", "bias_act", "--size", "tiny", "--rounds", "3", "--dtypes", "float32", "--layouts", "contiguous",
            "--modes", "fwd", "--impls", "reference"]
    assert_user_error(*run_cli(["bench", *tiny, *args], capsys), "bench", needle)


@pytest.mark.parametrize("args,cmd,needle", [
    (["frobnicate"], "", "invalid choice: 'frobnicate'"),
    ([], "", "required: COMMAND"),
    (["info", "--verbose"], " info", "unrecognized arguments: --verbose"),
])
def test_top_level_and_info_errors(args, cmd, needle, capsys):
    rc, err = run_cli(args, capsys)
    assert rc == 2 and err.splitlines() == [err.strip()] and err.startswith(f"fastgan{cmd}: error: ") and needle in err


def test_user_errors_in_a_subprocess(bad, data, tmp_path):
    """The console script as a user runs it: the whole stderr is the one line (no torch warning either)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cases = [
        (["eval", str(bad["malicious"][0]), "--device", "cpu"], "eval", "not a fastgan checkpoint"),
        (["sample", str(bad["malicious_pickle"][0]), "--out", str(tmp_path / "g.png")], "sample", "not a fastgan checkpoint"),
        (["train", "--data", str(data), "--out", str(tmp_path / "r"), "--resume", str(bad["truncated"][0]), *TINY],
         "train", "corrupt"),
        (["bench", "--ops", "nope"], "bench", "unknown case"),
    ]
    for args, cmd, needle in cases:
        r = subprocess.run([sys.executable, "-m", "fastgan", *args], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120)
        assert_user_error(r.returncode, r.stderr, cmd, needle)
        assert r.stdout == ""


def test_python_dash_m_and_console_script_entry():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "fastgan", "train", "--steps", "-3"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "steps: must be >= 1" in r.stderr and "Traceback" not in r.stderr
    assert _project_metadata().entry_points["console_scripts"] == ["fastgan = fastgan.cli:main"]


def _project_metadata():
    """pyproject.toml as setuptools applies it (tomllib is Python 3.11+; we support 3.10)."""
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    return apply_configuration(Distribution(), REPO / "pyproject.toml")


def test_package_metadata_without_deprecation_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. setuptools' warning on a TOML-table license
        dist = _project_metadata()
    assert dist.metadata.license_expression == "MIT"
    assert dist.metadata.python_requires == ">=3.10"
    # the supported torch range (2.11 through 2.14.1), the same for the build and at run time
    from setuptools.config.pyprojecttoml import load_file

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    def torch_range(reqs):
        return next(Requirement(r).specifier for r in reqs if Requirement(r).name == "torch")

    build_requires = load_file(REPO / "pyproject.toml")["build-system"]["requires"]
    assert torch_range(dist.install_requires) == torch_range(build_requires) == SpecifierSet(">=2.11,<2.15")
