"""fastgan eval on training checkpoints, and metrics during training (best.pt)."""

import json
import math

import numpy as np
import pytest
import torch

from fastgan.cli import main
from fastgan.metrics.api import METRICS
from fastgan.train import Trainer, load_checkpoint, load_generator_for_eval
from fastgan.train.checkpoint import CheckpointError
from fastgan.train.evaluation import HIGHER_IS_BETTER, LOWER_IS_BETTER, TrainingEvaluator, is_better
from tests.gan_fixtures import tiny_config, write_fmnist_like
from tests.test_data_idx import write_idx

TINY = ["--base-ch", "8", "--batch-size", "8", "--sample-n", "8", "--progress", "false", "--tensorboard", "false",
        "--log-every", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Train split (48 images, 4 classes) plus a test split, as the classifier needs both."""
    root = write_fmnist_like(tmp_path_factory.mktemp("idx"), n=48)
    rng = np.random.default_rng(1)
    labels = np.arange(24) % 4
    images = rng.integers(0, 40, (24, 28, 28))
    for i, c in enumerate(labels):
        images[i, 4 + 4 * c:10 + 4 * c, 6:20] = 220
    write_idx(root / "t10k-images-idx3-ubyte.gz", images, compress=True)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", labels, compress=True)
    return root


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Classifiers and reference statistics go to a fresh cache dir, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "fastgan"


def _state_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_load_generator_for_eval_run_folder_and_file(data, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--preset", "fmnist-cgan", "--data", str(data), "--out", str(out), "--steps", "3",
                 "--ckpt-every", "2", *TINY]) == 0
    got = load_generator_for_eval(out, "cpu")  # run folder: the newest checkpoint, like --resume auto
    assert got["checkpoint"].endswith("ckpt-00000003.pt")
    assert got["latent_dim"] == 100 and got["num_classes"] == 4 and got["dataset"] == str(data)
    state = load_checkpoint(out / "checkpoints" / "ckpt-00000003.pt")
    assert _state_equal(got["generator"].state_dict(), state["G_ema"])  # G_ema, not G
    assert not _state_equal(state["G"], state["G_ema"])
    assert not got["generator"].training
    older = load_generator_for_eval(out / "checkpoints" / "ckpt-00000002.pt", "cpu")
    assert older["checkpoint"].endswith("ckpt-00000002.pt")
    with pytest.raises(CheckpointError, match="no ckpt"):
        load_generator_for_eval(tmp_path, "cpu")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a fastgan checkpoint"):
        load_generator_for_eval(bad, "cpu")


def test_eval_cli_end_to_end(data, tmp_path, cache, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "fmnist-cgan", "--data", str(data), "--out", str(out), "--steps", "2", *TINY]) == 0
    capsys.readouterr()
    js = tmp_path / "eval.json"
    metrics = "fid_classifier,kid_classifier,precision_classifier,classifier_accuracy"
    # no --data: the dataset comes from the checkpoint's config
    rc = main(["eval", str(out), "--train-classifier", "--classifier-epochs", "1", "--metrics", metrics,
               "--num-gen", "32", "--batch-size", "16", "--json", str(js), "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "fid_classifier" in captured.out and "classifier test accuracy" in captured.out
    res = json.loads(js.read_text())
    assert list(res) == metrics.split(",")
    for name, r in res.items():
        assert math.isfinite(r["value"]), name
        pv = r["provenance"]
        assert pv["n_generated"] == 32 and pv["backbone"].startswith("fastgan-smallcnn")
        assert len(pv["backbone_sha256"] if "backbone_sha256" in pv else pv["weights_sha256"]) == 64
        assert "ckpt-00000002.pt" in pv["generator"]["name"]
    pv = res["fid_classifier"]["provenance"]
    assert pv["n_real"] == 48 and str(data) in pv["reference"]["name"] and len(pv["reference"]["fingerprint"]) == 64
    assert res["fid_classifier"]["value"] > 0 and "std" in res["kid_classifier"]
    assert 0.0 <= res["classifier_accuracy"]["value"] <= 1.0
    assert list((cache / "classifiers").glob("*.pt"))
    # the checkpoint file works too, and the cached classifier / reference statistics are reused
    rc = main(["eval", str(out / "checkpoints" / "ckpt-00000002.pt"), "--metrics", "fid_classifier",
               "--num-gen", "32", "--batch-size", "16", "--json", str(js)])
    assert rc == 0, capsys.readouterr().err
    again = json.loads(js.read_text())["fid_classifier"]
    assert again["value"] == pytest.approx(res["fid_classifier"]["value"], rel=1e-6)
    assert again["provenance"]["reference_stats_cached"] is True


def test_eval_cli_errors(data, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope"), "--metrics", "fid_classifier"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--steps", "1", *TINY]) == 0
    capsys.readouterr()
    # no classifier trained for this dataset yet: a clear message, not a traceback
    assert main(["eval", str(out), "--metrics", "fid_classifier", "--num-gen", "16"]) == 2
    assert "--train-classifier" in capsys.readouterr().err
    # classifier_accuracy on an unconditional model
    assert main(["eval", str(out), "--train-classifier", "--classifier-epochs", "1", "--metrics",
                 "classifier_accuracy", "--num-gen", "16"]) == 2
    assert "conditional" in capsys.readouterr().err


def test_metric_directions_cover_every_metric():
    assert set(METRICS) == LOWER_IS_BETTER | HIGHER_IS_BETTER and not LOWER_IS_BETTER & HIGHER_IS_BETTER
    assert is_better("fid_classifier", 1.0, 2.0) and not is_better("fid_classifier", 3.0, 2.0)
    assert is_better("cas", 0.9, 0.5) and not is_better("precision", 0.1, 0.5)
    assert is_better("kid", 0.5, None) and not is_better("kid", float("nan"), None)


def test_bad_metrics_options(data, tmp_path, capsys):
    with pytest.raises(ValueError, match="metrics: unknown 'bogus'"):
        tiny_config("fmnist-dcgan", data, tmp_path, metrics="fid_classifier,bogus")
    with pytest.raises(ValueError, match="metrics_every"):
        tiny_config("fmnist-dcgan", data, tmp_path, metrics="fid_classifier", metrics_every=0)
    with pytest.raises(SystemExit):
        main(["train", "--data", str(data), "--metrics", "nope", "--print-config"])
    assert "metrics: unknown 'nope'" in capsys.readouterr().err
    # a YAML list of names is accepted
    y = tmp_path / "c.yaml"
    y.write_text("metrics: [fid_classifier, kid_classifier]\nmetrics-every: 3\n")
    assert main(["train", "--config", str(y), "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["metrics"] == "fid_classifier,kid_classifier" and cfg["metrics_every"] == 3
    with pytest.raises(ValueError, match="conditional"):
        Trainer(tiny_config("fmnist-dcgan", data, tmp_path, metrics="cas"))


def _metric_rows(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if any(k.startswith("metric/") for k in r)]


def test_training_metrics_best_checkpoint(data, tmp_path, cache):
    out = tmp_path / "run"
    cfg = tiny_config("fmnist-dcgan", data, out, steps=5, metrics="fid_classifier,kid_classifier", metrics_every=2,
                      metrics_num_gen=16, keep_ckpts=1, tensorboard=True)
    result = Trainer(cfg).run()
    assert result.status == "finished"
    rows = _metric_rows(out)
    assert [r["step"] for r in rows] == [2, 4, 5]  # every 2 steps and at the end
    for r in rows:
        assert math.isfinite(r["metric/fid_classifier"]) and math.isfinite(r["metric/kid_classifier"])
        assert "metric/kid_classifier_std" in r
    assert list((cache / "classifiers").glob("*.pt"))  # trained on the run's dataset, cached
    best_row = min(rows, key=lambda r: r["metric/fid_classifier"])
    best = load_checkpoint(out / "checkpoints" / "best.pt")  # weights_only, format checked
    assert best["best"] == {"metric": "fid_classifier", "value": best_row["metric/fid_classifier"],
                            "step": best_row["step"]}
    assert best["step"] == best_row["step"]
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["best.pt", "ckpt-00000005.pt"]  # keep-last-N leaves best.pt alone
    last = load_checkpoint(out / "checkpoints" / "ckpt-00000005.pt")
    assert last["best"] == best["best"]
    assert list((out / "tb").iterdir())
    # fastgan eval takes best.pt too
    got = load_generator_for_eval(out / "checkpoints" / "best.pt", "cpu")
    assert _state_equal(got["generator"].state_dict(), best["G_ema"])


def test_training_metrics_do_not_change_training(data, tmp_path):
    """Evaluation draws no numbers from the training RNG streams: same weights with or without."""
    plain = Trainer(tiny_config("fmnist-dcgan", data, tmp_path / "a", steps=3))
    plain.run()
    assert plain.evaluator is None
    assert not (tmp_path / "a" / "checkpoints" / "best.pt").exists()
    assert not any("metric/" in line for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines())
    evald = Trainer(tiny_config("fmnist-dcgan", data, tmp_path / "b", steps=3, metrics="fid_classifier",
                                metrics_every=1, metrics_num_gen=8))
    evald.run()
    assert len(_metric_rows(tmp_path / "b")) == 3
    assert _state_equal(plain.G.state_dict(), evald.G.state_dict())
    assert _state_equal(plain.D.state_dict(), evald.D.state_dict())


@pytest.mark.parametrize("metric,values,best_step", [
    ("fid_classifier", [3.0, 1.0, 2.0, float("nan")], 2),  # lower is better; NaN never wins
    ("precision_classifier", [0.2, 0.1, 0.7, 0.5], 3),  # higher is better
])
def test_best_checkpoint_follows_metric_direction(data, tmp_path, monkeypatch, metric, values, best_step):
    scripted = iter(values)

    def fake_evaluate(self, step):
        return {metric: next(scripted), "other": 0.0}, 0.0

    monkeypatch.setattr(TrainingEvaluator, "evaluate", fake_evaluate)
    out = tmp_path / "run"
    cfg = tiny_config("fmnist-dcgan", data, out, steps=2, metrics=metric, metrics_every=1)
    Trainer(cfg).run()
    # resume with more steps: the best value so far travels in the checkpoint (a worse value at
    # step 3 must not replace best.pt from step 2)
    Trainer(tiny_config("fmnist-dcgan", data, out, steps=4, metrics=metric, metrics_every=1), resume="auto").run()
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["step"] == best_step and best["best"]["step"] == best_step
    assert best["best"]["value"] == values[best_step - 1]


def _ddp_worker(rank, world, port, data, out, result_dir):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    t = Trainer(tiny_config("fmnist-dcgan", data, out, steps=2, device="cpu", metrics="fid_classifier,kid_classifier",
                            metrics_every=1, metrics_num_gen=16))
    t.run()
    torch.save({"G": t.G.state_dict(), "best": t.evaluator.best,
                "classifier": t.evaluator.classifier[0].state_dict()}, os.path.join(result_dir, f"r{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_training_metrics_ddp_two_processes(data, tmp_path):
    """2 gloo ranks: one classifier (trained by rank 0), the same metric values, best.pt by rank 0."""
    import torch.multiprocessing as mp

    from tests.test_ddp import _free_port

    out = tmp_path / "run"
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(data), str(out), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    r0, r1 = torch.load(tmp_path / "r0.pt"), torch.load(tmp_path / "r1.pt")
    assert _state_equal(r0["G"], r1["G"]) and _state_equal(r0["classifier"], r1["classifier"])
    assert r0["best"] == r1["best"] and r0["best"]["metric"] == "fid_classifier"
    rows = _metric_rows(out)
    assert [r["step"] for r in rows] == [1, 2]  # written once, by rank 0
    assert load_checkpoint(out / "checkpoints" / "best.pt")["best"] == r0["best"]
