"""CUDA kernel of fastgan::grad_sqnorm and the CUDA penalty path. Skipped without a GPU;
FASTGAN_TEST_CUDA_ON_CPU=1 runs the same tests on the CPU kernels (tests/cuda_device.py)."""

import os

import pytest
import torch

from fastgan.losses import r1_penalty, r1_penalty_naive, wgan_gp_penalty, wgan_gp_penalty_naive
from fastgan.nn import EqualConv2d, EqualLinear
from fastgan.ops import grad_penalty, grad_penalty_ref
from tests.cuda_device import DEVICE, MARKS, cuda_only, side_stream_matches, tf32_off

pytestmark = MARKS


@pytest.fixture(autouse=True)
def _full_fp32():
    with tf32_off():
        yield


# (3, 5, 80, 81): 2 chunks of 16384 per sample; (33, 16, 64, 64): 4 chunks; (300, 2, 90, 100):
# 2 chunks per sample and more than 256 samples (the chunk-sum kernel's second block).
@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (1, 5), (3,), (3, 5, 80, 81), (33, 16, 64, 64), (300, 2, 90, 100)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_sqnorm_matches_cpu(shape, dtype, layout):
    x = torch.randn(shape, dtype=torch.float64)
    if layout == "channels_last" and len(shape) == 4:
        x = x.to(memory_format=torch.channels_last)
    elif layout == "strided" and len(shape) >= 2:
        x = x.transpose(0, -1).contiguous().transpose(0, -1)
    x = x.to(dtype)
    out = torch.ops.fastgan.grad_sqnorm(x.to(DEVICE))
    assert out.shape == (shape[0],) and out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    # The reference squares the same (rounded) values in double; the kernel accumulates in
    # float32 (float64): relative rounding of a sum of positive terms.
    ref = x.double().reshape(shape[0], -1).square().sum(1)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out.cpu().double(), ref, rtol=tol, atol=tol)
    torch.testing.assert_close(out.cpu(), torch.ops.fastgan.grad_sqnorm(x), rtol=tol, atol=tol)


def test_deterministic():
    x = torch.randn(8, 64, 64, 64, device=DEVICE)
    a = torch.ops.fastgan.grad_sqnorm(x)
    for _ in range(3):
        assert torch.equal(a, torch.ops.fastgan.grad_sqnorm(x))


@cuda_only("streams")
def test_side_stream():
    for shape in ((8, 3, 64, 64), (300, 20000), (5, 7)):
        side_stream_matches(torch.ops.fastgan.grad_sqnorm, torch.randn(shape, device=DEVICE))


@pytest.mark.parametrize("center", [0.0, 1.0])
def test_penalty_and_double_backward(center):
    x = torch.randn(3, 2, 5, 4, dtype=torch.float64, device=DEVICE, requires_grad=True)
    torch.testing.assert_close(grad_penalty(x, center), grad_penalty_ref(x, center))
    assert torch.autograd.gradcheck(lambda t: grad_penalty(t, center), (x,))
    assert torch.autograd.gradgradcheck(lambda t: grad_penalty(t, center), (x,))
    torch.library.opcheck(torch.ops.fastgan.grad_sqnorm, (x,))
    z = torch.zeros(2, 3, device=DEVICE, requires_grad=True)
    grad_penalty(z, 1.0).backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_penalties_match_naive_on_cuda():
    torch.manual_seed(0)
    D = torch.nn.Sequential(
        EqualConv2d(3, 8, 3, padding=1), torch.nn.Softplus(), EqualConv2d(8, 8, 3, stride=2, padding=1),
        torch.nn.Flatten(), EqualLinear(8 * 16, 1, activation="lrelu"),
    ).to(DEVICE).double()
    real = torch.randn(4, 3, 8, 8, device=DEVICE, dtype=torch.float64)
    fake = torch.randn_like(real)
    eps = torch.rand(4, device=DEVICE)
    for a, b in ((r1_penalty(D, real, 10.0), r1_penalty_naive(D, real, 10.0)),
                 (wgan_gp_penalty(D, real, fake, eps=eps), wgan_gp_penalty_naive(D, real, fake, eps=eps))):
        torch.testing.assert_close(a, b)
        ga = torch.autograd.grad(a, list(D.parameters()), allow_unused=True)
        gb = torch.autograd.grad(b, list(D.parameters()), allow_unused=True)
        for x, y in zip(ga, gb):
            if x is not None and y is not None:
                torch.testing.assert_close(x, y)


@cuda_only("fp16 autocast and GradScaler")
def test_amp_fp16_gradscaler():
    torch.manual_seed(0)
    D = torch.nn.Sequential(EqualConv2d(3, 8, 3, padding=1), torch.nn.Softplus(), torch.nn.Flatten(),
                            EqualLinear(8 * 64, 1)).to(DEVICE)
    real = torch.randn(4, 3, 8, 8, device=DEVICE)
    ref = r1_penalty(D, real, 10.0)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**14)
    with torch.autocast("cuda", dtype=torch.float16):
        pen = r1_penalty(D, real, 10.0, scaler=scaler)
    torch.testing.assert_close(pen, ref, rtol=2e-2, atol=1e-4)
    scaler.scale(pen).backward()
    assert all(torch.isfinite(p.grad).all() for p in D.parameters() if p.grad is not None)
