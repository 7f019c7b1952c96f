import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fastgan.train import CheckpointError, NonFiniteLossError, Trainer, load_checkpoint, train
from fastgan.train.checkpoint import list_checkpoints
from tests.gan_fixtures import tiny_config, write_fmnist_like

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_fmnist_like(tmp_path_factory.mktemp("idx"))


def _weights(state):
    return {k: v.clone() for k, v in state.items()}


@pytest.mark.parametrize("preset", ["fmnist-dcgan", "fmnist-cgan", "fmnist-wgan", "fmnist-wgan-gp", "progan", "stylegan2-256"])
def test_presets_train_a_few_steps(preset, data, tmp_path):
    extra = {"r1_every": 2} if preset == "stylegan2-256" else {}
    cfg = tiny_config(preset, data, tmp_path / "run", steps=3, n_critic=2 if "wgan" in preset else 1, **extra)
    t = Trainer(cfg)
    before = _weights(t.G.state_dict()), _weights(t.D.state_dict())
    res = t.run()
    assert res.status == "finished" and res.step == 3
    assert all(torch.isfinite(torch.tensor(v)) for k, v in res.losses.items() if k.startswith("loss"))
    for old, new in zip(before, (t.G.state_dict(), t.D.state_dict())):
        assert any(not torch.equal(old[k], new[k]) for k in old if old[k].is_floating_point())
    out = tmp_path / "run"
    assert (out / "samples" / "final.png").is_file() and (out / "samples" / "step-0000002.png").is_file()
    assert (out / "loss.png").is_file() and (out / "config.json").is_file()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    if preset == "fmnist-wgan":  # weight clipping holds
        assert all(p.abs().max() <= 0.01 + 1e-7 for p in t.D.parameters())
    if preset == "progan":  # 0.024 kimg seen with phase_kimg 0.01: stage 1, fading in
        assert (t.G.stage, t.D.stage) == (1, 1) and 0 < t.G.alpha < 1
    if preset == "stylegan2-256":
        assert "r1" in rows[0] and "r1" not in rows[1] and t.G.mapping.w_avg.abs().sum() > 0
    if preset in ("fmnist-wgan-gp", "progan"):
        assert "gp" in rows[0]
    if preset == "fmnist-cgan":
        assert t.G.embed is not None and t.D.embed is not None
        from PIL import Image
        w, h = Image.open(out / "samples" / "final.png").size
        assert w > h  # 4 classes a row, 8 samples -> 2 rows


def test_resume_is_bit_exact(data, tmp_path):
    # lazy R1 every 2 steps and EMA included; 2N straight == N + resume + N
    kw = dict(steps=4, r1_gamma=0.1, r1_every=2, ckpt_every=100, sample_every=100)
    a = Trainer(tiny_config("fmnist-dcgan", data, tmp_path / "a", **kw))
    a.run()
    b1 = Trainer(tiny_config("fmnist-dcgan", data, tmp_path / "b", **dict(kw, steps=2)))
    assert b1.run().last_checkpoint.name == "ckpt-00000002.pt"
    b2 = Trainer(tiny_config("fmnist-dcgan", data, tmp_path / "b", **kw), resume="auto")
    assert b2.step == 2
    b2.run()
    for name in ("G", "D", "G_ema"):
        sa, sb = getattr(a, name).state_dict(), getattr(b2, name).state_dict()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k} differs after resume"
    assert torch.equal(a.opt_g.state_dict()["state"][0]["exp_avg"], b2.opt_g.state_dict()["state"][0]["exp_avg"])


def test_checkpoint_contents_and_keep_last(data, tmp_path):
    cfg = tiny_config("fmnist-dcgan", data, tmp_path / "r", steps=6, ckpt_every=1, keep_ckpts=2, sample_every=100)
    train(cfg)
    ckpts = list_checkpoints(tmp_path / "r" / "checkpoints")
    assert [p.name for p in ckpts] == ["ckpt-00000005.pt", "ckpt-00000006.pt"]
    state = load_checkpoint(ckpts[-1])
    for key in ("G", "D", "G_ema", "opt_g", "opt_d", "scaler_g", "scaler_d", "step", "rng", "config", "dataset"):
        assert key in state
    assert state["step"] == 6 and len(state["rng"]) == 1 and isinstance(state["rng"][0]["torch"], torch.Tensor)
    assert not any(p.name.startswith(".") for p in (tmp_path / "r" / "checkpoints").iterdir())  # no temp files left


def test_corrupt_and_foreign_checkpoints(data, tmp_path):
    cfg = tiny_config("fmnist-dcgan", data, tmp_path / "r", steps=2)
    path = train(cfg).last_checkpoint
    bad = tmp_path / "bad.pt"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        Trainer(cfg, resume=str(bad))
    with pytest.raises(CheckpointError, match="no such"):
        Trainer(cfg, resume=str(tmp_path / "missing.pt"))
    other = tiny_config("fmnist-dcgan", data, tmp_path / "r", steps=4, lr_g=1e-3)
    with pytest.raises(CheckpointError, match="another config: lr_g"):
        Trainer(other, resume=str(path))
    other_data = write_fmnist_like(tmp_path / "idx2", seed=5)
    with pytest.raises(CheckpointError, match="another dataset"):
        Trainer(tiny_config("fmnist-dcgan", other_data, tmp_path / "r", steps=4), resume=str(path))
    # a pickle with code in it is refused by weights_only loading
    evil = tmp_path / "evil.pt"
    torch.save({"format": "fastgan-checkpoint-v1", "G": object()}, evil)
    with pytest.raises(CheckpointError):
        Trainer(cfg, resume=str(evil))


def test_nonfinite_loss_stops_or_skips(data, tmp_path, monkeypatch):
    import fastgan.losses as losses

    real = losses.g_loss
    monkeypatch.setattr(losses, "g_loss", lambda logits, kind: real(logits, kind) * float("nan"))
    cfg = tiny_config("fmnist-dcgan", data, tmp_path / "r", steps=3, ckpt_every=1)
    with pytest.raises(NonFiniteLossError, match=r"step 0: G loss is nan"):
        train(cfg)
    assert list_checkpoints(tmp_path / "r" / "checkpoints") == []
    t = Trainer(tiny_config("fmnist-dcgan", data, tmp_path / "s", steps=3, skip_nonfinite=True))
    g0 = {k: v.clone() for k, v in t.G.state_dict().items()}
    res = t.run()
    assert res.status == "finished" and t.skipped == 3
    assert all(torch.equal(g0[k], t.G.state_dict()[k]) for k in g0 if "running" not in k and "num_batches" not in k)


def test_nonfinite_weights_are_never_checkpointed(data, tmp_path):
    t = Trainer(tiny_config("fmnist-dcgan", data, tmp_path / "r", steps=1))
    t.run()
    with torch.no_grad():
        next(t.G.parameters()).fill_(float("inf"))
    t.step = 7
    assert t.save() is None
    assert [p.name for p in list_checkpoints(tmp_path / "r" / "checkpoints")] == ["ckpt-00000001.pt"]


@pytest.mark.parametrize("preset", ["fmnist-dcgan", "stylegan2-256"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_and_channels_last(data, tmp_path, precision, preset):
    extra = {"r1_every": 1} if preset == "stylegan2-256" else {}
    cfg = tiny_config(preset, data, tmp_path / "r", steps=2, precision=precision, channels_last=True, grad_clip=1.0, **extra)
    t = Trainer(cfg)
    res = t.run()
    assert res.status == "finished" and all(torch.isfinite(p).all() for p in t.G.parameters())
    assert all(torch.isfinite(p).all() for p in t.D.parameters())
    if preset == "stylegan2-256":
        assert "r1" in res.losses
    elif precision == "fp16":
        assert t.G.net[1].clamp == 256.0
        assert load_checkpoint(res.last_checkpoint)["scaler_g"]["scale"] > 0


def test_sigterm_leaves_a_loadable_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fastgan", "train", "--data", str(data), "--out", str(out), "--base-ch", "8",
           "--batch-size", "8", "--steps", "100000", "--ckpt-every", "100000", "--sample-every", "100000",
           "--log-every", "1", "--progress", "false", "--tensorboard", "false"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            m = out / "metrics.jsonl"
            if m.is_file() and len(m.read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.stdout.read().decode()
    assert rc == 128 + signal.SIGTERM, log
    ckpts = list_checkpoints(out / "checkpoints")
    assert ckpts, log
    state = load_checkpoint(ckpts[-1])
    assert state["step"] >= 2


def test_r1_step_shares_the_real_forward_and_lazy_adam(data, tmp_path):
    """When R1 is due, D runs once on the fakes and once on the reals (the adversarial loss
    and R1 share that forward); otherwise also twice. D's Adam uses StyleGAN2's lazy
    regularization hyper-parameters (lr * c, betas ** c, c = k / (k + 1))."""
    cfg = tiny_config("stylegan2-256", data, tmp_path / "run", steps=2, r1_every=2)
    t = Trainer(cfg)
    c = cfg.r1_every / (cfg.r1_every + 1)
    group = t.opt_d.param_groups[0]
    assert group["lr"] == pytest.approx(cfg.lr_d * c)
    assert group["betas"] == pytest.approx((cfg.beta1 ** c, cfg.beta2 ** c))
    # the preset's lazy path-length penalty gives G's Adam the same treatment (every pl_every)
    cg = cfg.pl_every / (cfg.pl_every + 1)
    assert cfg.pl_weight > 0 and t.opt_g.param_groups[0]["lr"] == pytest.approx(cfg.lr_g * cg)
    assert t.opt_g.param_groups[0]["betas"] == pytest.approx((cfg.beta1 ** cg, cfg.beta2 ** cg))
    t_off = Trainer(tiny_config("stylegan2-256", data, tmp_path / "off", steps=2, pl_weight=0.0))
    assert t_off.opt_g.param_groups[0]["lr"] == pytest.approx(cfg.lr_g) and t_off.pl is None
    calls = []
    t.D.register_forward_hook(lambda m, i, o: calls.append(i[0].requires_grad))
    real = torch.rand(cfg.batch_size, cfg.img_channels, cfg.resolution, cfg.resolution) * 2 - 1
    t.step = 0  # R1 due
    out = t._d_step(real, None)
    assert "r1" in out and len(calls) == 2 and calls[1]  # fake, then real as a grad-requiring leaf
    calls.clear()
    t.step = 1
    out = t._d_step(real, None)
    assert "r1" not in out and len(calls) == 2


def test_fp16_penalty_overflow_skips_the_step_and_lowers_the_scale(data, tmp_path, monkeypatch):
    from fastgan import losses

    cfg = tiny_config("stylegan2-256", data, tmp_path / "r", steps=1, precision="fp16", r1_every=1)
    t = Trainer(cfg)
    real_fn = losses.d_loss_with_r1

    def overflowing(*a, **k):
        loss, r1 = real_fn(*a, **k)
        return loss, r1 * float("inf")

    monkeypatch.setattr(losses, "d_loss_with_r1", overflowing)
    before = _weights(t.D.state_dict())
    real = torch.rand(cfg.batch_size, cfg.img_channels, cfg.resolution, cfg.resolution) * 2 - 1
    out = t._d_step(real, None)
    assert out == {} and t.skipped == 1
    assert float(t.scaler_d.get_scale()) == 2.0 ** 15
    assert all(torch.equal(before[k], v) for k, v in t.D.state_dict().items())
    # without fp16 the same overflow is a non-finite loss: the run stops naming R1
    t2 = Trainer(tiny_config("stylegan2-256", data, tmp_path / "r2", steps=1, r1_every=1))
    with pytest.raises(NonFiniteLossError, match="R1"):
        t2._d_step(real, None)

def test_stylegan2_regularizers_train_and_resume(data, tmp_path):
    """Path length every 2 steps and style mixing on a tiny StyleGAN2: pl in the metrics rows
    on the due steps, pl_mean in the checkpoint, and 2 + resume + 2 steps == 4 steps."""
    kw = dict(steps=4, resolution=8, max_ch=8, batch_size=4, pl_weight=2.0, pl_every=2, style_mixing=0.9,
              r1_every=2, ckpt_every=100, sample_every=100)
    a = Trainer(tiny_config("stylegan2-256", data, tmp_path / "a", **kw))
    assert a.pl is not None and a.cfg.pl_batch_shrink == 2
    mixed = []
    real_mix = __import__("fastgan.train.loop", fromlist=["mix_styles"]).mix_styles

    def spy(w1, w2, cutoff, num_ws):
        mixed.append(cutoff.clone())
        return real_mix(w1, w2, cutoff, num_ws)

    import fastgan.train.loop as loop
    orig, loop.mix_styles = loop.mix_styles, spy
    try:
        a.run()
    finally:
        loop.mix_styles = orig
    rows = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert ["pl" in r for r in rows] == [True, False, True, False]
    assert all(r["pl"] > 0 and r["pl_mean"] > 0 for r in rows if "pl" in r)
    assert mixed and all(((c >= 1) & (c <= a.G.num_ws)).all() for c in mixed)
    assert float(a.pl.pl_mean) > 0
    b1 = Trainer(tiny_config("stylegan2-256", data, tmp_path / "b", **dict(kw, steps=2)))
    ckpt = b1.run().last_checkpoint
    state = load_checkpoint(ckpt)
    assert state["pl"]["pl_mean"].dtype == torch.float32 and float(state["pl"]["pl_mean"]) > 0
    b2 = Trainer(tiny_config("stylegan2-256", data, tmp_path / "b", **kw), resume="auto")
    assert torch.equal(b2.pl.pl_mean, b1.pl.pl_mean)
    b2.run()
    assert torch.equal(a.pl.pl_mean, b2.pl.pl_mean)
    for name in ("G", "D", "G_ema"):
        sa, sb = getattr(a, name).state_dict(), getattr(b2, name).state_dict()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k} differs after resume"
    # a checkpoint written before these keys existed still loads (its config had the defaults)
    del state["pl"]
    for k in ("pl_weight", "pl_every", "pl_decay", "pl_batch_shrink", "style_mixing"):
        del state["config"][k]
    old = tmp_path / "old.pt"
    torch.save(state, old)
    with pytest.raises(CheckpointError, match="pl_weight: checkpoint 0.0, this run 2.0"):
        Trainer(tiny_config("stylegan2-256", data, tmp_path / "c", **kw), resume=str(old))
    c = Trainer(tiny_config("stylegan2-256", data, tmp_path / "c", **dict(kw, pl_weight=0.0, style_mixing=0.0, pl_every=4)),
                resume=str(old))
    assert c.step == 2 and c.pl is None


def test_stylegan2_regularizer_config_errors(data, tmp_path):
    from fastgan.train.config import make_config

    for key, value, msg in (("pl_weight", 1.0, "only the stylegan2 model"),
                            ("style_mixing", 0.5, "only the stylegan2 model")):
        with pytest.raises(ValueError, match=f"{key}: {msg}"):
            make_config("fmnist-dcgan", overrides={key: value})
    for key, value in (("pl_weight", -1.0), ("pl_decay", 0.0), ("pl_decay", 1.5), ("style_mixing", 1.5),
                       ("pl_every", 0), ("pl_batch_shrink", 0)):
        with pytest.raises(ValueError, match=f"^{key}: "):
            make_config("stylegan2-256", overrides={key: value})
    with pytest.raises(ValueError, match="pl_batch_shrink: 8 leaves no sample"):
        make_config("stylegan2-256", overrides={"batch_size": 4, "pl_batch_shrink": 8})
    cfg = make_config("stylegan2-256")
    assert (cfg.pl_weight, cfg.pl_every, cfg.pl_decay, cfg.pl_batch_shrink, cfg.style_mixing) == (2.0, 4, 0.01, 2, 0.9)
    assert make_config("fmnist-dcgan").pl_weight == 0.0 and make_config("fmnist-dcgan").style_mixing == 0.0


def test_fp16_path_length_overflow_skips_the_g_step(data, tmp_path, monkeypatch):
    from fastgan import losses

    cfg = tiny_config("stylegan2-256", data, tmp_path / "r", steps=1, precision="fp16", resolution=8, max_ch=8,
                      batch_size=4, pl_every=1)
    t = Trainer(cfg)
    real_fn = losses.PathLengthPenalty.penalty
    monkeypatch.setattr(losses.PathLengthPenalty, "penalty", lambda self, l: real_fn(self, l) * float("inf"))
    before = _weights(t.G.state_dict())
    assert t._g_step(cfg.batch_size) == {} and t.skipped == 1
    assert float(t.scaler_g.get_scale()) == 2.0 ** 15 and float(t.pl.pl_mean) == 0.0
    assert all(torch.equal(before[k], v) for k, v in t.G.state_dict().items())
    t2 = Trainer(tiny_config("stylegan2-256", data, tmp_path / "r2", steps=1, resolution=8, max_ch=8, batch_size=4,
                             pl_every=1))
    with pytest.raises(NonFiniteLossError, match="path-length"):
        t2._g_step(4)


def _max_rel_diff(a: dict, b: dict) -> float:
    worst = 0.0
    for k in a:
        if a[k].is_floating_point():
            d = (a[k].double() - b[k].double()).abs().max() / b[k].double().abs().max().clamp_min(1e-3)
            worst = max(worst, float(d))
    return worst


def test_gradient_accumulation_equals_one_batch(data, tmp_path, monkeypatch):
    """batch_gpu = batch_size / 2 (two strided micro-batches of 4: D's minibatch-stddev groups
    stay those of the whole batch) gives the weights of one batch of 8, with R1 and the path
    length (every 2 steps) and style mixing on. The per-sample draws are made for the whole
    batch; G's per-pixel noise is off (drawn per forward, it depends on the split)."""
    from tests.gan_fixtures import split_independent_randomness

    split_independent_randomness(monkeypatch.setattr)
    kw = dict(steps=3, resolution=8, max_ch=8, batch_size=8, r1_every=2, pl_every=2, ckpt_every=100,
              sample_every=100)
    runs = {}
    for bg in (0, 4, 2):
        t = Trainer(tiny_config("stylegan2-256", data, tmp_path / f"bg{bg}", batch_gpu=bg, **kw))
        assert t.batch_rank == 8 and t.n_micro == 8 // (bg or 8)
        t.run()
        runs[bg] = t
    a, b = runs[0], runs[4]
    rows = [json.loads(x) for x in (tmp_path / "bg4" / "metrics.jsonl").read_text().splitlines()]
    assert ["pl" in r and "r1" in r for r in rows] == [True, False, True]
    for name in ("G", "D", "G_ema"):
        assert _max_rel_diff(getattr(b, name).state_dict(), getattr(a, name).state_dict()) < 1e-4, name
    torch.testing.assert_close(a.pl.pl_mean, b.pl.pl_mean, rtol=1e-5, atol=1e-7)
    assert a.G.mapping.w_avg.abs().sum() > 0
    # the last step's gradients themselves (Adam would hide a uniform scale error) and losses
    for name in ("G", "D"):
        for (k, pa), pb in zip(getattr(a, name).named_parameters(), getattr(b, name).parameters()):
            assert (pa.grad is None) == (pb.grad is None), k
            if pa.grad is not None:
                torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-4, atol=1e-6, msg=f"{name}.{k}")
    ra = [json.loads(x) for x in (tmp_path / "bg0" / "metrics.jsonl").read_text().splitlines()]
    for x, y in zip(rows, ra):
        for k in ("loss_d", "loss_g", "r1", "pl"):
            assert (k in x) == (k in y) and (k not in x or x[k] == pytest.approx(y[k], rel=1e-5)), k
    # micro-batches of 2 shrink D's minibatch-stddev groups to 2 samples: another function
    assert _max_rel_diff(runs[2].D.state_dict(), a.D.state_dict()) > 1e-2


def test_batch_split_errors(data, tmp_path):
    from fastgan.train.config import make_config
    from fastgan.train.dist import DistInfo

    with pytest.raises(ValueError, match="batch_gpu: 3 does not divide batch_size 8"):
        tiny_config("stylegan2-256", data, tmp_path, batch_size=8, batch_gpu=3)
    with pytest.raises(ValueError, match="batch_gpu: must be >= 0"):
        make_config("stylegan2-256", overrides={"batch_gpu": -1})
    with pytest.raises(ValueError, match="batch_size: the global batch 6 does not split evenly over 4 processes"):
        Trainer(tiny_config("fmnist-dcgan", data, tmp_path / "a", batch_size=6), dist_info=DistInfo(0, 4))
    with pytest.raises(ValueError, match=r"batch_gpu: 4 does not divide the per-process batch 6 \(batch_size 12 over 2"):
        Trainer(tiny_config("fmnist-dcgan", data, tmp_path / "b", batch_size=12, batch_gpu=4), dist_info=DistInfo(0, 2))
    with pytest.raises(ValueError, match="pl_batch_shrink: 4 does not divide batch_gpu 2"):
        Trainer(tiny_config("stylegan2-256", data, tmp_path / "c", resolution=8, max_ch=8, batch_size=4, batch_gpu=2,
                            pl_batch_shrink=4))


def test_default_preset_keeps_classic_dcgan_settings():
    # README's quickstart trains this preset; its tuning (bench/tune_fmnist_dcgan.py) changed
    # steps / batch / EMA only, the DCGAN recipe stays.
    from fastgan.train.config import DEFAULT_PRESET, make_config
    cfg = make_config()
    assert DEFAULT_PRESET == "fmnist-dcgan" and cfg.model == "dcgan" and cfg.resolution == 28
    assert (cfg.z_dim, cfg.optimizer, cfg.lr_g, cfg.lr_d, cfg.beta1) == (100, "adam", 2e-4, 2e-4, 0.5)
    assert cfg.loss == "nonsaturating" and cfg.d_norm == "batch" and 0.0 < cfg.ema_beta < 1.0
    # images seen: budgeted for ~5.5 minutes on 2 quiet cores (~1100 img/s at batch 128)
    assert cfg.batch_size == 128 and cfg.steps * cfg.batch_size <= 360_000


def test_ema_half_life_in_kimg(data, tmp_path):
    """ema_kimg: G_ema's per-step beta is 0.5 ** (images per step / (ema_kimg * 1000))."""
    cfg = tiny_config("stylegan2-256", data, tmp_path / "run", resolution=16, max_ch=8, steps=1, batch_size=4,
                      ema_kimg=0.002, ema_warmup=False, sample_every=100, ckpt_every=100)
    t = Trainer(cfg)
    before = {k: v.clone() for k, v in t.G_ema.state_dict().items()}
    t.run()
    beta = 0.5 ** (4 / 2.0)
    G, E = t.G.state_dict(), t.G_ema.state_dict()
    name = "conv4.weight"
    torch.testing.assert_close(E[name], before[name] * beta + G[name] * (1 - beta))
    with pytest.raises(ValueError, match="ema_kimg"):
        tiny_config("stylegan2-256", data, tmp_path / "x", ema_kimg=-1.0)


def test_hires_presets_are_config_f():
    """stylegan2-512 / -1024: StyleGAN2's config-f shape (channels 32768 / R up to 512,
    8 mapping layers; StyleGAN2-ADA's network summary: G 30,370,060 / D 29,012,513
    parameters at 1024 px), batch 32, lr 0.002, EMA half-life 10 kimg."""
    from fastgan.train.build import build_models
    from fastgan.train.config import make_config

    for preset, res, gamma in (("stylegan2-512", 512, 1.6384), ("stylegan2-1024", 1024, 6.5536)):
        cfg = make_config(preset)
        assert (cfg.resolution, cfg.batch_size, cfg.lr_g, cfg.lr_d, cfg.ema_kimg, cfg.ema_warmup) == \
            (res, 32, 2e-3, 2e-3, 10.0, False)
        assert cfg.r1_gamma == pytest.approx(0.0002 * res ** 2 / cfg.batch_size)
        assert cfg.r1_gamma == gamma
    G, D = build_models(make_config("stylegan2-1024"))
    assert len(G.mapping.net) == 8 and G.num_ws == 18
    assert sum(p.numel() for p in G.parameters()) == 30_370_060
    assert sum(p.numel() for p in D.parameters()) == 29_012_513


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["stylegan2-512", "stylegan2-1024"])
def test_hires_presets_train_two_steps(preset, tmp_path):
    """A 2-step smoke run of each large preset (full size, batch 2) on synthetic data."""
    from fastgan.data.stream import in_memory_source
    from fastgan.train.config import make_config

    res = int(preset.split("-")[1])
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, res, res), generator=gen, dtype=torch.uint8)
    src = in_memory_source(images, None, 0, f"synthetic {res} px")
    cfg = make_config(preset, overrides=dict(out=str(tmp_path / "run"), steps=2, batch_size=2, sample_n=2,
                                             r1_every=2, log_every=1, ckpt_every=2, progress=False,
                                             tensorboard=False, device="cpu"))
    result = Trainer(cfg, source=src).run()
    assert result.status == "finished" and result.step == 2
    assert all(math.isfinite(v) for k, v in result.losses.items() if k.startswith("loss"))
    assert load_checkpoint(result.last_checkpoint)["step"] == 2
    assert (tmp_path / "run" / "samples" / "final.png").is_file()



def test_packed_npy_with_mirror_and_workers_resumes_bit_exact(tmp_path):
    # a packed .npy trains memory-mapped through the DataLoader path; x-flips and worker
    # processes keep 2N straight == N + resume + N
    import numpy as np

    from fastgan.data.folder import PackedDataset

    rng = np.random.default_rng(0)
    np.save(tmp_path / "p.npy", rng.integers(0, 256, (48, 1, 28, 28), dtype=np.uint8))
    kw = dict(steps=4, ckpt_every=100, sample_every=100, mirror=True)
    a = Trainer(tiny_config("fmnist-dcgan", tmp_path / "p.npy", tmp_path / "a", **kw))
    assert isinstance(a.source.dataset, PackedDataset) and a.source.images is None
    a.run()
    b1 = Trainer(tiny_config("fmnist-dcgan", tmp_path / "p.npy", tmp_path / "b", **dict(kw, steps=2)))
    b1.run()
    b2 = Trainer(tiny_config("fmnist-dcgan", tmp_path / "p.npy", tmp_path / "b", **dict(kw, num_workers=2)),
                 resume="auto")
    assert b2.step == 2
    b2.run()
    for k, v in a.G.state_dict().items():
        assert torch.equal(v, b2.G.state_dict()[k]), f"G.{k} differs after resume"
    with pytest.raises(CheckpointError, match="mirror: checkpoint True, this run False"):
        Trainer(tiny_config("fmnist-dcgan", tmp_path / "p.npy", tmp_path / "b", **dict(kw, mirror=False)), resume="auto")


def test_skip_decisions_are_taken_over_all_processes(data, tmp_path, monkeypatch):
    """A loss or penalty that is non-finite on another DDP process only (any_flag says so)
    makes this process skip or stop too, so the processes' collectives stay paired; the fp16
    loss scale drops on every process alike."""
    import fastgan.train.loop as loop

    cfg = tiny_config("stylegan2-256", data, tmp_path / "run", resolution=16, max_ch=8, steps=1, batch_size=4,
                      precision="fp16", r1_every=1)
    t = Trainer(cfg)
    finite = torch.tensor(1.0)
    t.scaler_d.scale(finite)  # the scaler starts its scale at first use, as in a D step
    assert t._penalty_ok(finite, "R1")
    monkeypatch.setattr(loop, "any_flag", lambda flag, info: True)  # another rank saw inf
    scale = float(t.scaler_d.get_scale())
    assert not t._penalty_ok(finite, "R1")
    assert float(t.scaler_d.get_scale()) == scale * t.scaler_d.get_backoff_factor()
    with pytest.raises(NonFiniteLossError, match="another process"):
        t._check(finite, "G")


def test_path_length_batch_per_process_must_not_be_empty(data, tmp_path):
    """The path length runs on per-process batch // pl_batch_shrink samples: 0 is an error
    naming pl_batch_shrink (8 processes share a global batch of 8: 1 each, shrink 2)."""
    from types import SimpleNamespace

    cfg = tiny_config("stylegan2-256", data, tmp_path / "run", resolution=16, max_ch=8, batch_size=8)
    with pytest.raises(ValueError, match="pl_batch_shrink"):
        Trainer._split_batch(SimpleNamespace(cfg=cfg, info=SimpleNamespace(world=8)))
    assert Trainer._split_batch(SimpleNamespace(cfg=cfg, info=SimpleNamespace(world=4))) == (2, 1)


@pytest.mark.parametrize("loss", ["nonsaturating", "hinge", "wasserstein", "lsgan"])
def test_d_step_backpropagates_the_fakes_first_with_the_gradients_of_the_sum(data, tmp_path, monkeypatch, loss):
    """D's step backpropagates the fakes' half of its loss before D sees the reals (the
    fakes' graph is gone by then), with the gradients of one backward of the whole loss
    plus lazy R1, and the whole loss reported."""
    import weakref

    from fastgan import losses

    cfg = tiny_config("stylegan2-256", data, tmp_path / "r", steps=1, r1_every=2, loss=loss)
    t = Trainer(cfg)
    t.step = 0  # R1 due
    grads = {}
    monkeypatch.setattr(t, "_opt_step", lambda m, o, s: grads.update(
        {n: p.grad.clone() for n, p in m.named_parameters()}))
    # every tensor D's graphs save, by the D call that saved it
    saved, calls = [], []
    forward = t.D_fwd

    def tracked(x, *a):
        calls.append([w for w in saved if w() is not None])  # what earlier calls' graphs still keep

        class Box:
            def __init__(self, v):
                self.v = v
        def pack(v):
            b = Box(v)
            saved.append(weakref.ref(b))
            return b
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda b: b.v):
            return forward(x, *a)

    t.D_fwd = tracked
    real = torch.rand(cfg.batch_size, cfg.img_channels, cfg.resolution, cfg.resolution) * 2 - 1
    torch.manual_seed(5)
    out = t._d_step(real, None)
    assert len(calls) == 2 and calls[1] == []  # the reals' forward: the fakes' graph already freed
    # reference: one backward of the whole loss
    t.D_fwd = forward
    t.D.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    lat = t._latents(cfg.batch_size)
    with torch.no_grad():
        fake = t._fake(lat, ())
    loss_d, r1 = losses.d_loss_with_r1(forward, real, forward(fake), cfg.r1_gamma, loss)
    (loss_d + r1 * cfg.r1_every).backward()
    torch.testing.assert_close(out["loss_d"], loss_d.detach())
    for n, p in t.D.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-6, msg=n)
