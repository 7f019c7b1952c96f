import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_errors_without_traceback(data, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--resume", str(bad), *TINY]) == 1
    assert "corrupt or not a fastgan checkpoint" in capsys.readouterr().err
    assert main(["sample", str(bad), "--out", str(tmp_path / "x.png")]) == 1
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"), *TINY]) == 1


def test_info_eval_bench(capsys):
    assert main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "backend" in info and "extension_loaded" in info["backend"]
    for cmd, mod in (("eval", "metrics"), ("bench", "benchmark")):
        try:
            __import__(f"fastgan.{mod}.cli")
        except ImportError:
            assert main([cmd, "--help"]) == 2
            assert "not available in this build" in capsys.readouterr().err


def test_python_dash_m_and_console_script_entry():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "fastgan", "train", "--steps", "-3"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "steps: must be >= 1" in r.stderr and "Traceback" not in r.stderr
    import tomllib
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["fastgan"] == "fastgan.cli:main"
