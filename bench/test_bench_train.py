"""Full GAN training iterations, fastgan layers vs stock layers (same model, same weights).

    .venv/bin/python -m pytest bench/test_bench_train.py --benchmark-group-by=param:model,param:layout \
        --benchmark-columns=median,iqr,min,rounds

``layout``: models, parameters and images in NCHW or channels_last (the same for both builds).
fastgan's StyleGAN2 layers run the modulated convolution with the style on the activations
(one batched convolution, as StyleGAN2-ADA trains); the stock build uses per-sample weights
and one grouped convolution (rosinality's port). Both compute the same function.

* StyleGAN2-style G and D at 64 px, batch 8: one iteration = D step (real + fake logits,
  non-saturating loss) + R1 penalty on the reals (the lazy regularization step: here every
  iteration, an upper bound) + G step, Adam. FASTGAN_BENCH_MAXCH caps the channels
  (default 128, so a round takes seconds, not minutes, on 2 CPU cores).
* DCGAN of the fmnist-dcgan preset (28 px, batch 128): D step + G step; images/s is
  128 / median.

Before timing, both builds are loaded with the same weights and must give the same
losses. Several random input batches rotate across rounds; the first call is warm-up.
"""

import os

import pytest
import torch

from fastgan import losses, use_layers
from fastgan.train.build import build_models
from fastgan.train.config import make_config

MAXCH = int(os.environ.get("FASTGAN_BENCH_MAXCH", "128"))
N_SETS = 3

CASES = {
    "stylegan2-64-b8": dict(preset="stylegan2-256", resolution=64, max_ch=MAXCH, batch_size=8, r1=True),
    "dcgan-fmnist-b128": dict(preset="fmnist-dcgan", batch_size=128, r1=False),
}


def _setup(case, layers, layout="contiguous"):
    spec = dict(CASES[case])
    preset, r1, bs = spec.pop("preset"), spec.pop("r1"), spec["batch_size"]
    cfg = make_config(preset, overrides=spec)
    torch.manual_seed(0)
    G, D = build_models(cfg, 0)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    G, D = G.to(memory_format=fmt), D.to(memory_format=fmt)
    opt_g = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), 1e-4, betas=(0.0, 0.99))
    g = torch.Generator().manual_seed(1)
    sets = [((torch.rand(bs, cfg.img_channels, cfg.resolution, cfg.resolution, generator=g) * 2 - 1).contiguous(memory_format=fmt),
             torch.randn(bs, cfg.z_dim, generator=g), torch.randn(bs, cfg.z_dim, generator=g)) for _ in range(N_SETS)]

    def iteration(real, z1, z2):
        with use_layers(layers):
            return _iteration(real, z1, z2)

    def _iteration(real, z1, z2):
        with torch.no_grad():
            fake = G(z1)
        loss_d = losses.d_loss(D(real), D(fake))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        if r1:
            losses.r1_penalty(D, real, 1.0).backward()
        opt_d.step()
        for p in D.parameters():
            p.requires_grad_(False)
        loss_g = losses.g_loss(D(G(z2)))
        for p in D.parameters():
            p.requires_grad_(True)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        return loss_d.detach(), loss_g.detach()

    return G, D, sets, iteration


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("layers", ["fastgan", "stock"])
@pytest.mark.parametrize("model", list(CASES))
def test_train_iteration(benchmark, model, layers, layout):
    if layout == "channels_last" and model.startswith("dcgan"):
        pytest.skip("channels_last: StyleGAN2 case only (28 px DCGAN: layout makes no difference worth timing)")
    G, D, sets, iteration = _setup(model, layers, layout)
    # correctness first: the same weights give the same first-iteration losses in both builds
    Gr, Dr, _, it_ref = _setup(model, "stock" if layers == "fastgan" else "fastgan", layout)
    Gr.load_state_dict(G.state_dict())
    Dr.load_state_dict(D.state_dict())
    torch.manual_seed(5)
    a = iteration(*sets[0])
    torch.manual_seed(5)
    b = it_ref(*sets[0])
    torch.testing.assert_close(torch.stack(a), torch.stack(b), atol=1e-3, rtol=1e-3)
    del Gr, Dr, it_ref
    state = {"i": 0}

    def run():
        s = sets[state["i"] % N_SETS]
        state["i"] += 1
        return iteration(*s)

    benchmark.extra_info["batch"] = sets[0][0].shape[0]
    benchmark.pedantic(run, rounds=int(os.environ.get("FASTGAN_BENCH_ROUNDS", "5")), iterations=1, warmup_rounds=1)
    benchmark.extra_info["img_per_s"] = sets[0][0].shape[0] / benchmark.stats.stats.median
