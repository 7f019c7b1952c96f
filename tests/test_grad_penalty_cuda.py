"""CUDA kernel of fastgan::grad_sqnorm and the CUDA penalty path; skipped without a GPU (or
under FASTGAN_BACKEND=ref); with one, a missing extension or one without CUDA kernels fails
(bench/gpu_check.sh runs it on a GPU machine)."""

import os

import pytest
import torch

import fastgan._backend as backend
from fastgan.losses import r1_penalty, r1_penalty_naive, wgan_gp_penalty, wgan_gp_penalty_naive
from fastgan.nn import EqualConv2d, EqualLinear
from fastgan.ops import grad_penalty, grad_penalty_ref

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(os.environ.get("FASTGAN_BACKEND", "").strip().lower() == "ref",
                       reason="FASTGAN_BACKEND=ref: the compiled kernels are not tested"),
]


def test_cuda_kernels_are_built():
    """On a GPU machine the CUDA kernels must be there: a missing extension, or one built
    without CUDA kernels, fails here instead of skipping the file (or, where the ops fall
    back, comparing the reference with itself)."""
    info = backend.backend_info()
    assert info["extension_loaded"], info["extension_error"]
    assert info["cuda_kernels"], "fastgan._C was built without CUDA kernels (no nvcc at build time?)"


@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (1, 5), (3,), (3, 5, 80, 81), (33, 16, 64, 64)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_sqnorm_matches_cpu(shape, dtype, layout):
    x = torch.randn(shape, dtype=torch.float64)
    if layout == "channels_last" and len(shape) == 4:
        x = x.to(memory_format=torch.channels_last)
    elif layout == "strided" and len(shape) >= 2:
        x = x.transpose(0, -1).contiguous().transpose(0, -1)
    x = x.to(dtype)
    out = torch.ops.fastgan.grad_sqnorm(x.cuda())
    ref = x.double().reshape(shape[0], -1).square().sum(1)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out.cpu().double(), ref, rtol=tol, atol=tol)


def test_deterministic():
    x = torch.randn(8, 64, 64, 64, device="cuda")
    a = torch.ops.fastgan.grad_sqnorm(x)
    for _ in range(3):
        assert torch.equal(a, torch.ops.fastgan.grad_sqnorm(x))


@pytest.mark.parametrize("center", [0.0, 1.0])
def test_penalty_and_double_backward(center):
    x = torch.randn(3, 2, 5, 4, dtype=torch.float64, device="cuda", requires_grad=True)
    torch.testing.assert_close(grad_penalty(x, center), grad_penalty_ref(x, center))
    assert torch.autograd.gradcheck(lambda t: grad_penalty(t, center), (x,))
    assert torch.autograd.gradgradcheck(lambda t: grad_penalty(t, center), (x,))
    torch.library.opcheck(torch.ops.fastgan.grad_sqnorm, (x,))
    z = torch.zeros(2, 3, device="cuda", requires_grad=True)
    grad_penalty(z, 1.0).backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_penalties_match_naive_on_cuda():
    torch.manual_seed(0)
    D = torch.nn.Sequential(
        EqualConv2d(3, 8, 3, padding=1), torch.nn.Softplus(), EqualConv2d(8, 8, 3, stride=2, padding=1),
        torch.nn.Flatten(), EqualLinear(8 * 16, 1, activation="lrelu"),
    ).cuda().double()
    real = torch.randn(4, 3, 8, 8, device="cuda", dtype=torch.float64)
    fake = torch.randn_like(real)
    eps = torch.rand(4, device="cuda")
    for a, b in ((r1_penalty(D, real, 10.0), r1_penalty_naive(D, real, 10.0)),
                 (wgan_gp_penalty(D, real, fake, eps=eps), wgan_gp_penalty_naive(D, real, fake, eps=eps))):
        torch.testing.assert_close(a, b)
        ga = torch.autograd.grad(a, list(D.parameters()), allow_unused=True)
        gb = torch.autograd.grad(b, list(D.parameters()), allow_unused=True)
        for x, y in zip(ga, gb):
            if x is not None and y is not None:
                torch.testing.assert_close(x, y)


def test_amp_fp16_gradscaler():
    torch.manual_seed(0)
    D = torch.nn.Sequential(EqualConv2d(3, 8, 3, padding=1), torch.nn.Softplus(), torch.nn.Flatten(),
                            EqualLinear(8 * 64, 1)).cuda()
    real = torch.randn(4, 3, 8, 8, device="cuda")
    ref = r1_penalty(D, real, 10.0)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**14)
    with torch.autocast("cuda", dtype=torch.float16):
        pen = r1_penalty(D, real, 10.0, scaler=scaler)
    torch.testing.assert_close(pen, ref, rtol=2e-2, atol=1e-4)
    scaler.scale(pen).backward()
    assert all(torch.isfinite(p.grad).all() for p in D.parameters() if p.grad is not None)
