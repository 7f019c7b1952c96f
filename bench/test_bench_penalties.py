"""Gradient-penalty training steps, fastgan vs the naive stock implementation, CPU float32.

    .venv/bin/python -m pytest bench/test_bench_penalties.py --benchmark-group-by=func,param:layout

(a) R1 step: forward on reals, gradient w.r.t. the images with create_graph, penalty,
    backward to D's parameters; StyleGAN2-style 64x64 residual discriminator, batch 16.
(b) WGAN-GP critic step: D(real), D(fake), penalty at lerp(real, fake, eps), backward;
    DCGAN-style critic (ndf 64), 64x64, batch 64.

fastgan: EqualConv2d / EqualLinear (conv2d_gradfix) + bias_act + grad_penalty +
no_weight_gradients (fastgan.losses). naive: the same architecture and the same weights
with nn.Conv2d / nn.Linear / F.leaky_relu and autograd.grad + norm
(fastgan.losses.*_naive). Both variants are checked to give the same penalty (and the
same parameter gradients) before timing. Inputs rotate over 3 sets; medians.
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
from fastgan.nn import EqualConv2d, EqualLinear
from fastgan.ops import bias_act, conv2d

R1_BATCH = int(os.environ.get("FASTGAN_BENCH_R1_BATCH", "16"))
GP_BATCH = int(os.environ.get("FASTGAN_BENCH_GP_BATCH", "64"))
ROUNDS = int(os.environ.get("FASTGAN_BENCH_ROUNDS", "5"))
N_SETS = 3
SQRT_HALF = math.sqrt(0.5)

# -- (a) StyleGAN2-style residual discriminator ------------------------------------------

CH = {64: 32, 32: 64, 16: 128, 8: 256, 4: 256}


class FastResD(nn.Module):
    def __init__(self):
        super().__init__()
        self.fromrgb = EqualConv2d(3, CH[64], 1, bias=False)
        self.b_rgb = nn.Parameter(torch.randn(CH[64]) * 0.1)
        self.blocks = nn.ModuleList()
        for r in (64, 32, 16, 8):
            ci, co = CH[r], CH[r // 2]
            m = nn.Module()
            m.conv0, m.b0 = EqualConv2d(ci, ci, 3, padding=1, bias=False), nn.Parameter(torch.randn(ci) * 0.1)
            m.conv1, m.b1 = EqualConv2d(ci, co, 3, stride=2, padding=1, bias=False), nn.Parameter(torch.randn(co) * 0.1)
            m.skip = EqualConv2d(ci, co, 1, stride=2, bias=False)
            self.blocks.append(m)
        self.conv = EqualConv2d(CH[4], CH[4], 3, padding=1, bias=False)
        self.b_conv = nn.Parameter(torch.randn(CH[4]) * 0.1)
        self.fc = EqualLinear(CH[4] * 16, CH[4], activation="lrelu")
        self.out = EqualLinear(CH[4], 1)

    def forward(self, x):
        x = bias_act(self.fromrgb(x), self.b_rgb, act="lrelu")
        for m in self.blocks:
            y = m.skip(x)
            x = bias_act(m.conv0(x), m.b0, act="lrelu")
            x = bias_act(m.conv1(x), m.b1, act="lrelu")
            x = (y + x) * SQRT_HALF
        x = bias_act(self.conv(x), self.b_conv, act="lrelu")
        return self.out(self.fc(x.flatten(1)))


def _lrelu(x):
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


class NaiveResD(nn.Module):
    """FastResD's architecture and weights with stock layers."""

    def __init__(self, f: FastResD):
        super().__init__()

        def conv(e, b):
            c = nn.Conv2d(e.in_channels, e.out_channels, e.kernel_size, e.stride, e.padding, bias=b is not None)
            with torch.no_grad():
                c.weight.copy_(e.runtime_weight())
                if b is not None:
                    c.bias.copy_(b)
            return c

        def lin(e):
            lin_ = nn.Linear(e.in_features, e.out_features)
            with torch.no_grad():
                lin_.weight.copy_(e.runtime_weight())
                lin_.bias.copy_(e.runtime_bias())
            return lin_

        self.fromrgb = conv(f.fromrgb, f.b_rgb)
        self.blocks = nn.ModuleList()
        for fm in f.blocks:
            m = nn.Module()
            m.conv0, m.conv1, m.skip = conv(fm.conv0, fm.b0), conv(fm.conv1, fm.b1), conv(fm.skip, None)
            self.blocks.append(m)
        self.conv, self.fc, self.out = conv(f.conv, f.b_conv), lin(f.fc), lin(f.out)

    def forward(self, x):
        x = _lrelu(self.fromrgb(x))
        for m in self.blocks:
            y = m.skip(x)
            x = _lrelu(m.conv1(_lrelu(m.conv0(x))))
            x = (y + x) * SQRT_HALF
        x = _lrelu(self.conv(x))
        return self.out(_lrelu(self.fc(x.flatten(1))))


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
    torch.manual_seed(0)
    fast = FastResD()
    naive = NaiveResD(fast)
    fmt = _fmt(layout)
    fast, naive = fast.to(memory_format=fmt), naive.to(memory_format=fmt)
    g = torch.Generator().manual_seed(1)
    sets = [(torch.randn(R1_BATCH, 3, 64, 64, generator=g).contiguous(memory_format=fmt),) for _ in range(N_SETS)]
    gamma = 10.0
    # same penalty and same parameter gradients before timing
    x = sets[0][0]
    pf, pn = r1_penalty(fast, x, gamma), r1_penalty_naive(naive, x, gamma)
    torch.testing.assert_close(pf, pn, rtol=1e-4, atol=1e-6)
    gf = torch.autograd.grad(pf, fast.blocks[1].conv0.weight)[0]
    gn = torch.autograd.grad(pn, naive.blocks[1].conv0.weight)[0] * fast.blocks[1].conv0.weight_gain
    torch.testing.assert_close(gf, gn, rtol=1e-3, atol=1e-5)
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
