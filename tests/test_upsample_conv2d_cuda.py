"""CUDA kernels of fir_bias_act / fir_bias_act_grad (via upsample_conv2d and
downsample_conv2d) against the CPU float64 reference. Skipped without a GPU (or under
FASTGAN_BACKEND=ref); with one, a missing extension or one without CUDA kernels fails."""

import os

import pytest
import torch

import fastgan._backend as backend
from fastgan.ops import ACTIVATIONS, downsample_conv2d, upsample_conv2d, upsample_conv2d_ref
from fastgan.ops.upsample_conv2d import _parse_filter

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(os.environ.get("FASTGAN_BACKEND", "").strip().lower() == "ref",
                       reason="FASTGAN_BACKEND=ref: the compiled kernels are not tested"),
]
TOL = {torch.float32: 1e-4, torch.float64: 1e-10, torch.float16: 5e-3, torch.bfloat16: 4e-2}


def test_cuda_kernels_are_built():
    """On a GPU machine the CUDA kernels must be there: a missing extension, or one built
    without CUDA kernels, fails here instead of skipping the file (or, where the ops fall
    back, comparing the reference with itself)."""
    info = backend.backend_info()
    assert info["extension_loaded"], info["extension_error"]
    assert info["cuda_kernels"], "fastgan._C was built without CUDA kernels (no nvcc at build time?)"


def close(a, b, dtype, scale=1.0):
    err = (a.double().cpu() - b.double().cpu()).abs().max().item()
    ref = max(1.0, b.double().abs().max().item())
    assert err <= TOL[dtype] * scale * ref, (err, TOL[dtype] * scale * ref)


def grads(fn, x, w, b, gy_seed=3, **kw):
    x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
    b = None if b is None else b.detach().requires_grad_()
    y = fn(x, w, b, **kw)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(gy_seed)).to(y)
    gs = torch.autograd.grad(y, [t for t in (x, w, b) if t is not None], gy)
    return y, gs


@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("f", [(1, 3, 3, 1), [[1, 2, 1], [2, 4, 2], [1, 2, 1]]])
def test_up_cuda_vs_cpu(act, dtype, cl, f):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 24, 7, 9, generator=g, dtype=torch.float64)
    w = torch.randn(24, 24, 3, 3, generator=g, dtype=torch.float64) * 0.2
    b = torch.randn(24, generator=g, dtype=torch.float64)
    yr, gr = grads(upsample_conv2d_ref, x, w, b, act=act, clamp=1.2, f=f)
    xd = x.to("cuda", dtype)
    if cl:
        xd = xd.to(memory_format=torch.channels_last)
    y, gs = grads(upsample_conv2d, xd, w.to("cuda", dtype), b.to("cuda", dtype), act=act, clamp=1.2, f=f)
    assert y.is_cuda and y.dtype == dtype
    close(y, yr, dtype, 4)
    for a, r in zip(gs, gr):
        close(a, r, dtype, 40)


@pytest.mark.parametrize("cl", [False, True])
def test_down_and_second_order_cuda(cl):
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 8, 9, 10, generator=g, dtype=torch.float64)
    w0 = torch.randn(6, 8, 3, 3, generator=g, dtype=torch.float64) * 0.3
    outs = []
    for dev in ("cpu", "cuda"):
        x = x0.to(dev).requires_grad_()
        if cl:
            x = x.detach().to(memory_format=torch.channels_last).requires_grad_()
        w = w0.to(dev).requires_grad_()
        y = downsample_conv2d(upsample_conv2d(x, w.transpose(0, 1)[:8, :8].contiguous(), act="tanh"), w, clamp=0.9)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        outs.append(torch.autograd.grad(gx.square().sum(), (x, w)))
    for a, r in zip(*outs):
        close(a, r, torch.float64)


def test_opcheck_cuda():
    fir = _parse_filter((1, 3, 3, 1), 4.0, False, "t")
    x = torch.randn(2, 3, 7, 6, device="cuda", requires_grad=True)
    b = torch.randn(3, device="cuda", requires_grad=True)
    args = (x, b, fir.taps, fir.fh, fir.fw, fir.separable, [1, 2, 2, 0], "lrelu", 0.2, 1.4, 0.5)
    torch.library.opcheck(torch.ops.fastgan.fir_bias_act.default, args)
