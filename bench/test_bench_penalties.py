"""Gradient-penalty training steps, fastgan vs the naive stock implementation, CPU float32.

    .venv/bin/python -m pytest bench/test_bench_penalties.py --benchmark-group-by=func,param:layout

(a) R1 step: forward on reals, gradient w.r.t. the images with create_graph, penalty,
    backward to D's parameters; StyleGAN2-style 64x64 residual discriminator, batch 16.
(b) WGAN-GP critic step: D(real), D(fake), penalty at lerp(real, fake, eps), backward;
    DCGAN-style critic (ndf 64), 64x64, batch 64.

(a) fastgan: the discriminator in the fastgan kit (FIR down-sampling kernels, bias_act) +
fastgan.losses.r1_penalty (grad_penalty op, no_weight_gradients). naive: the same
discriminator under fastgan.use_layers("stock") (pad + depthwise conv2d FIR, F.leaky_relu) +
fastgan.losses.r1_penalty_naive (autograd.grad + square/sum/mean).
(b) fastgan: conv2d_gradfix convs + bias_act + grad_penalty + no_weight_gradients. naive:
nn.Conv2d / F.leaky_relu and autograd.grad + norm (fastgan.losses.*_naive).
Both variants are checked to give the same penalty (and the same parameter gradients)
before timing. Inputs rotate over 3 sets; medians.
`layout` runs both variants on NCHW or channels_last tensors.
Env: FASTGAN_BENCH_R1_BATCH (16), FASTGAN_BENCH_GP_BATCH (64), FASTGAN_BENCH_ROUNDS (5).
"""

import itertools
import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastgan.losses import r1_penalty, r1_penalty_naive, wgan_gp_penalty, wgan_gp_penalty_naive
from fastgan import use_layers
from fastgan.ops import bias_act, conv2d

R1_BATCH = int(os.environ.get("FASTGAN_BENCH_R1_BATCH", "16"))
GP_BATCH = int(os.environ.get("FASTGAN_BENCH_GP_BATCH", "64"))
ROUNDS = int(os.environ.get("FASTGAN_BENCH_ROUNDS", "5"))
N_SETS = 3

# -- (a) StyleGAN2-style residual discriminator ------------------------------------------
# fastgan.models' StyleGAN2 discriminator at 64 px (channels 32/64/128/256/256 from 64 px down
# to 4 px): residual blocks with [1, 3, 3, 1] FIR down-sampling, equalized learning rate,
# minibatch stddev. The fastgan kit: FIR + bias_act kernels; the stock kit (a _Stock wrapper
# runs it under use_layers("stock")): pad + depthwise conv2d FIR, conv bias, F.leaky_relu,
# gain. Same parameters, same weights.


class _Stock(nn.Module):
    """Runs the wrapped model in the stock layer kit."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args):
        with use_layers("stock"):
            return self.model(*args)


def _res_d(layers):
    from fastgan.models.stylegan2 import StyleGAN2Discriminator

    torch.manual_seed(0)
    D = StyleGAN2Discriminator(64, 3, base_ch=2048, max_ch=256)
    return D if layers == "fastgan" else _Stock(D)


# -- (b) DCGAN-style critic -----------------------------------------------------------------

NDF = 64


class FastCritic(nn.Module):
    def __init__(self):
        super().__init__()
        chans = [3, NDF, NDF * 2, NDF * 4, NDF * 8]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 4, 2, 1) for a, b in zip(chans, chans[1:]))
        self.head = nn.Conv2d(NDF * 8, 1, 4, 1, 0)

    def forward(self, x):
        for c in self.convs:
            x = bias_act(conv2d(x, c.weight, stride=2, padding=1), c.bias, act="lrelu", gain=1.0)
        return conv2d(x, self.head.weight, self.head.bias).flatten(1)


class NaiveCritic(FastCritic):
    def forward(self, x):
        for c in self.convs:
            x = F.leaky_relu(c(x), 0.2)
        return self.head(x).flatten(1)


# -- helpers ----------------------------------------------------------------------------------


def _fmt(layout):
    return torch.channels_last if layout == "channels_last" else torch.contiguous_format


def _check_same(fast, naive, loss_fast, loss_naive, rtol):
    a, b = loss_fast(), loss_naive()
    torch.testing.assert_close(a, b, rtol=rtol, atol=1e-6)


def _run(benchmark, step, sets):
    cycle = itertools.cycle(range(N_SETS))

    def run():
        step(*sets[next(cycle)])

    for _ in range(2):
        run()
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("impl", ["fastgan", "naive"])
def test_r1_step(benchmark, impl, layout):
    fast, naive = _res_d("fastgan"), _res_d("stock")
    naive.model.load_state_dict(fast.state_dict())
    fmt = _fmt(layout)
    fast, naive = fast.to(memory_format=fmt), naive.to(memory_format=fmt)
    g = torch.Generator().manual_seed(1)
    sets = [(torch.randn(R1_BATCH, 3, 64, 64, generator=g).contiguous(memory_format=fmt),) for _ in range(N_SETS)]
    gamma = 10.0
    # same penalty and same parameter gradients before timing
    x = sets[0][0]
    pf, pn = r1_penalty(fast, x, gamma), r1_penalty_naive(naive, x, gamma)
    torch.testing.assert_close(pf, pn, rtol=1e-4, atol=1e-6)
    for name in ("blocks.0.conv1.weight", "blocks.1.conv0.bias", "fc.weight"):
        gf = torch.autograd.grad(pf, fast.get_parameter(name), retain_graph=True)[0]
        gn = torch.autograd.grad(pn, naive.model.get_parameter(name), retain_graph=True)[0]
        torch.testing.assert_close(gf, gn, rtol=1e-3, atol=1e-6)
    D, pen = (fast, r1_penalty) if impl == "fastgan" else (naive, r1_penalty_naive)

    def step(x):
        D.zero_grad(set_to_none=True)
        pen(D, x, gamma).backward()

    _run(benchmark, step, sets)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("impl", ["fastgan", "naive"])
def test_wgan_gp_critic_step(benchmark, impl, layout):
    torch.manual_seed(0)
    fast = FastCritic()
    naive = NaiveCritic()
    naive.load_state_dict(fast.state_dict())
    fmt = _fmt(layout)
    fast, naive = fast.to(memory_format=fmt), naive.to(memory_format=fmt)
    g = torch.Generator().manual_seed(1)
    sets = [
        tuple(torch.randn(GP_BATCH, 3, 64, 64, generator=g).contiguous(memory_format=fmt) for _ in range(2))
        + (torch.rand(GP_BATCH, generator=g),)
        for _ in range(N_SETS)
    ]
    real, fake, eps = sets[0]
    pf = wgan_gp_penalty(fast, real, fake, 10.0, eps=eps)
    pn = wgan_gp_penalty_naive(naive, real, fake, 10.0, eps=eps)
    torch.testing.assert_close(pf, pn, rtol=1e-4, atol=1e-6)
    gf = torch.autograd.grad(pf, fast.convs[1].weight)[0]
    gn = torch.autograd.grad(pn, naive.convs[1].weight)[0]
    torch.testing.assert_close(gf, gn, rtol=1e-3, atol=1e-5)
    D, gp = (fast, wgan_gp_penalty) if impl == "fastgan" else (naive, wgan_gp_penalty_naive)

    def step(real, fake, eps):
        D.zero_grad(set_to_none=True)
        loss = D(fake).mean() - D(real).mean() + gp(D, real, fake, 10.0, eps=eps)
        loss.backward()

    _run(benchmark, step, sets)


# -- (c) the penalty alone: one pass (fastgan) vs norm/square/sum/mean (stock) ------------


@pytest.mark.parametrize("center", [0.0, 1.0])
@pytest.mark.parametrize("impl", ["fastgan", "naive"])
def test_penalty_op_fwd_bwd(benchmark, impl, center):
    from fastgan.ops import grad_penalty, grad_penalty_ref

    fn = grad_penalty if impl == "fastgan" else grad_penalty_ref
    g = torch.Generator().manual_seed(2)
    sets = [(torch.randn(GP_BATCH, 3, 64, 64, generator=g).requires_grad_(True),) for _ in range(N_SETS)]
    torch.testing.assert_close(grad_penalty(sets[0][0], center), grad_penalty_ref(sets[0][0], center))

    def step(x):
        x.grad = None
        fn(x, center).backward()

    cycle = itertools.cycle(range(N_SETS))
    for _ in range(3):
        step(*sets[next(cycle)])
    benchmark.pedantic(lambda: step(*sets[next(cycle)]), rounds=max(ROUNDS, 20), iterations=1)
