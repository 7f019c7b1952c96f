"""CUDA kernel of torch.ops.fastgan.upfirdn2d against the CPU op and the float64
pure-PyTorch reference, gradients, opcheck and torch.compile on the GPU.

Skipped without a CUDA device (or under FASTGAN_BACKEND=ref); with one, a missing extension
or one without CUDA kernels fails.
"""

from __future__ import annotations

import os
import random

import pytest
import torch
from torch.testing._internal.optests import opcheck

import fastgan._backend as backend
from fastgan.ops import setup_filter, upfirdn2d, upfirdn2d_ref, upsample2d

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(os.environ.get("FASTGAN_BACKEND", "").strip().lower() == "ref",
                       reason="FASTGAN_BACKEND=ref: the compiled kernels are not tested"),
]

TOL = {
    torch.float64: dict(rtol=1e-6, atol=1e-6),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}
LAYOUTS = ["contiguous", "channels_last"]


def test_cuda_kernels_are_built():
    """On a GPU machine the CUDA kernels must be there: a missing extension, or one built
    without CUDA kernels, fails here instead of skipping the file (or, where the ops fall
    back, comparing the reference with itself)."""
    info = backend.backend_info()
    assert info["extension_loaded"], info["extension_error"]
    assert info["cuda_kernels"], "fastgan._C was built without CUDA kernels (no nvcc at build time?)"


def test_upfirdn2d_has_a_cuda_kernel():
    assert torch._C._dispatch_has_kernel_for_dispatch_key("fastgan::upfirdn2d", "CUDA")


def _layout(x, layout):
    return x.to(memory_format=torch.channels_last) if layout == "channels_last" else x.contiguous()


def _check(x, f, up, down, pad, flip=False, gain=1.0):
    y = upfirdn2d(x, f.cuda(), up, down, pad, flip, gain)
    assert y.is_cuda and y.dtype == x.dtype
    ref = upfirdn2d_ref(x.cpu().double(), f, up, down, pad, flip, gain)
    assert y.shape == ref.shape
    torch.testing.assert_close(y.cpu().double(), ref, **TOL[x.dtype])
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert y.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    # Same op on the CPU.
    yc = upfirdn2d(x.cpu(), f, up, down, pad, flip, gain)
    torch.testing.assert_close(y.cpu(), yc, **TOL[x.dtype])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", list(TOL), ids=str)
@pytest.mark.parametrize(
    "up,down,pad,taps,sep",
    [
        (2, 1, [2, 1, 2, 1], [1, 3, 3, 1], True),
        (1, 2, [1, 1, 1, 1], [1, 3, 3, 1], True),
        (1, 1, [2, 1, 2, 1], [1, 3, 3, 1], False),
        (2, 1, [2, 1, 2, 1], [1, 3, 3, 1], False),
        (1, 2, [3, 3, 3, 3], [1, 2, 3, 4, 4, 3, 2, 1], True),
        ([3, 1], [1, 2], [0, 2, -1, 1], [1, 5, 2], False),
    ],
)
def test_matches_reference(up, down, pad, taps, sep, dtype, layout):
    torch.manual_seed(0)
    x = _layout(torch.randn(3, 37, 17, 23, device="cuda").to(dtype), layout)
    _check(x, setup_filter(taps, separable=sep), up, down, pad, gain=2.0)
    _check(x, setup_filter(taps, separable=sep), up, down, pad, flip=True)


def test_random_general():
    rng = random.Random(1)
    done = 0
    while done < 60:
        up = [rng.randint(1, 4), rng.randint(1, 4)]
        down = [rng.randint(1, 4), rng.randint(1, 4)]
        f = torch.randn(rng.randint(1, 9)) if rng.random() < 0.5 else torch.randn(rng.randint(1, 7), rng.randint(1, 7))
        h, w = rng.randint(1, 12), rng.randint(1, 12)
        pad = [rng.randint(-3, 5) for _ in range(4)]
        if w * up[0] + pad[0] + pad[1] < f.shape[-1] or h * up[1] + pad[2] + pad[3] < f.shape[0]:
            continue
        x = _layout(torch.randn(2, rng.randint(1, 6), h, w, device="cuda", dtype=torch.float64), rng.choice(LAYOUTS))
        _check(x, f, up, down, pad, rng.random() < 0.5, rng.choice([1.0, 4.0]))
        done += 1


def test_large_batch_and_noncontiguous():
    torch.manual_seed(2)
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(8, 128, 64, 64, device="cuda")
    y = upsample2d(x, f)
    torch.testing.assert_close(y.cpu(), upsample2d(x.cpu(), f), rtol=1e-5, atol=1e-5)
    xs = torch.randn(2, 8, 20, 20, device="cuda")[:, ::2, 1:, ::3]
    _check(xs, f, 2, 1, 1)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradients(layout):
    torch.manual_seed(3)
    for up, down, pad, sep in ((2, 1, [2, 1, 2, 1], True), (1, 2, [1, 1, 1, 1], False), ([2, 1], [1, 3], [0, 1, 2, -1], True)):
        f = setup_filter([1, 3, 3, 1], separable=sep).cuda()
        x = _layout(torch.randn(2, 3, 6, 7, device="cuda", dtype=torch.float64), layout).requires_grad_()
        fn = lambda x: upfirdn2d(x, f, up, down, pad, gain=2)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


def test_opcheck_and_compile():
    f = setup_filter([1, 3, 3, 1]).cuda()
    x = torch.randn(2, 3, 5, 6, device="cuda", dtype=torch.float64, requires_grad=True)
    opcheck(torch.ops.fastgan.upfirdn2d.default, (x, f, 2, 2, 1, 1, 2, 1, 2, 1, False, 4.0))
    fs = setup_filter([1, 3, 3, 1], separable=True).cuda()
    opcheck(torch.ops.fastgan.upfirdn2d.default, (x.to(memory_format=torch.channels_last), fs, 1, 1, 2, 2, 1, 1, 1, 1, True, 1.0))

    def fn(x):
        return upfirdn2d(upfirdn2d(x, fs, up=2, padding=[2, 1, 2, 1], gain=4).relu(), fs, down=2, padding=1)

    xx = torch.randn(2, 4, 8, 8, device="cuda", requires_grad=True)
    eager = fn(xx)
    out = torch.compile(fn, fullgraph=True)(xx)
    torch.testing.assert_close(out, eager)


def test_errors():
    x = torch.randn(1, 2, 6, 6, device="cuda")
    f = setup_filter([1, 3, 3, 1]).cuda()
    with pytest.raises(RuntimeError, match="crops everything"):
        torch.ops.fastgan.upfirdn2d(x, f, 1, 1, 1, 1, -2, -2, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match="f is on"):
        torch.ops.fastgan.upfirdn2d(x, f.cpu(), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
