"""CUDA kernel of torch.ops.fastgan.upfirdn2d against the CPU op and the float64
pure-PyTorch reference, gradients, opcheck and torch.compile on the GPU.

Skipped unless a CUDA device is present and fastgan._C has CUDA kernels;
FASTGAN_TEST_CUDA_ON_CPU=1 runs the same tests on the CPU kernels (tests/cuda_device.py).
"""

from __future__ import annotations

import random

import pytest
import torch
from torch.testing._internal.optests import opcheck

from fastgan.ops import setup_filter, upfirdn2d, upfirdn2d_ref, upsample2d
from tests.cuda_device import DEVICE, MARKS, ON_CPU, cuda_only, side_stream_matches

pytestmark = MARKS

# Against the float64 reference on the same (rounded) input: float64 rounding only (taps
# and sums in double, up to 64 products of O(1) values); float32: float accumulation;
# half types: the result rounded to 11 / 8 significant bits (+ float accumulation).
TOL = {
    torch.float64: dict(rtol=1e-12, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}
LAYOUTS = ["contiguous", "channels_last"]


def _layout(x, layout):
    return x.to(memory_format=torch.channels_last) if layout == "channels_last" else x.contiguous()


def _check(x, f, up, down, pad, flip=False, gain=1.0):
    """x on DEVICE, f on the CPU."""
    y = upfirdn2d(x, f.to(DEVICE), up, down, pad, flip, gain)
    assert y.device.type == DEVICE and y.dtype == x.dtype
    # The reference scales its float32 taps by gain in float32; scaling its gain-1 result
    # in double instead keeps it exact to float64 rounding for any gain.
    ref = upfirdn2d_ref(x.cpu().double(), f, up, down, pad, flip, 1.0) * gain
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
    x = _layout(torch.randn(3, 37, 17, 23).to(DEVICE, dtype), layout)
    _check(x, setup_filter(taps, separable=sep), up, down, pad, gain=2.0)
    _check(x, setup_filter(taps, separable=sep), up, down, pad, flip=True)
    # A gain that is not a power of two: its product with the float32 taps is exact in
    # double only (float64 inputs must get float64 taps).
    _check(x, setup_filter(taps, separable=sep), up, down, pad, gain=1.7)


@pytest.mark.parametrize("dtype", list(TOL), ids=str)
def test_random_general(dtype):
    rng = random.Random({torch.float64: 1, torch.float32: 2, torch.float16: 3, torch.bfloat16: 4}[dtype])
    done = 0
    while done < 40:
        up = [rng.randint(1, 4), rng.randint(1, 4)]
        down = [rng.randint(1, 4), rng.randint(1, 4)]
        if rng.random() < 0.5:
            f = torch.randn(rng.randint(1, 9))
        else:
            f = torch.randn(rng.randint(1, 7), rng.randint(1, 7))
        h, w = rng.randint(1, 12), rng.randint(1, 12)
        pad = [rng.randint(-3, 5) for _ in range(4)]
        if w * up[0] + pad[0] + pad[1] < f.shape[-1] or h * up[1] + pad[2] + pad[3] < f.shape[0]:
            continue
        x = torch.randn(2, rng.randint(1, 6), h, w, dtype=torch.float64).to(DEVICE, dtype)
        _check(_layout(x, rng.choice(LAYOUTS)), f, up, down, pad, rng.random() < 0.5,
               rng.choice([1.0, 4.0, 1.7, 0.3]))
        done += 1


def test_float64_taps_in_double():
    """float64 input, taps that float32 cannot hold after the gain: the CUDA kernel must
    build its taps in double (a float32 tap is off by ~1e-8 relative)."""
    torch.manual_seed(5)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    for f in (torch.tensor([0.1, 0.7, 0.3]), torch.tensor([[0.1, 0.7], [0.3, 1.1]])):
        for gain in (1.7, 3.0, 0.1):
            y = upfirdn2d(x.to(DEVICE), f.to(DEVICE), 2, 1, 1, False, gain)
            ref = upfirdn2d_ref(x, f, 2, 1, 1, False, 1.0) * gain
            torch.testing.assert_close(y.cpu(), ref, rtol=1e-14, atol=1e-14)
            torch.testing.assert_close(y.cpu(), upfirdn2d(x, f, 2, 1, 1, False, gain), rtol=1e-14, atol=1e-14)


def test_large_batch_and_noncontiguous():
    torch.manual_seed(2)
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(8, 128, 64, 64, device=DEVICE)
    y = upsample2d(x, f.to(DEVICE))
    torch.testing.assert_close(y.cpu(), upsample2d(x.cpu(), f), rtol=1e-5, atol=1e-5)
    xs = torch.randn(2, 8, 20, 20, device=DEVICE)[:, ::2, 1:, ::3]
    assert not xs.is_contiguous() and not xs.is_contiguous(memory_format=torch.channels_last)
    _check(xs, f, 2, 1, 1)
    xt = torch.randn(2, 20, 20, 8, device=DEVICE, dtype=torch.float64).permute(0, 3, 2, 1)  # h, w swapped
    _check(xt, setup_filter([1, 2, 1]), [1, 2], [2, 1], [1, 0, 0, 2], gain=1.7)


def test_empty_input_nonempty_output():
    """H = 0 with padding: every output is zero (no tap lands on an input row)."""
    x = torch.randn(2, 3, 0, 5, device=DEVICE)
    f = setup_filter([1, 3, 3, 1]).to(DEVICE)
    y = upfirdn2d(x, f, up=2, padding=[1, 1, 3, 2])
    assert y.shape == (2, 3, 2, 9)
    assert bool((y == 0).all())
    assert upfirdn2d(torch.randn(0, 3, 4, 4, device=DEVICE), f, padding=2).shape == (0, 3, 5, 5)


@cuda_only("the CUDA kernel's 32-bit index limits")
def test_factor_limits():
    x = torch.randn(1, 2, 0, 4, device=DEVICE)
    f = setup_filter([1, 3, 3, 1]).to(DEVICE)
    big = 2**31 + 2  # cast to int this would be a negative factor, or zero for 2^32
    for name, args in (("upx", (big, 1, 1, 1)), ("upy", (1, big, 1, 1)), ("upy", (1, 2**32, 1, 1)),
                       ("downx", (1, 1, big, 1)), ("downy", (1, 1, 1, 2**30))):
        with pytest.raises(RuntimeError, match=name):
            torch.ops.fastgan.upfirdn2d(x, f, *args, 1, 2, 3, 3, False, 1.0)
    with pytest.raises(RuntimeError, match="padx0"):
        torch.ops.fastgan.upfirdn2d(x, f, 1, 1, 1, 1, -(2**31), 2**31 + 8, 3, 3, False, 1.0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradients(layout):
    torch.manual_seed(3)
    for up, down, pad, sep in ((2, 1, [2, 1, 2, 1], True), (1, 2, [1, 1, 1, 1], False), ([2, 1], [1, 3], [0, 1, 2, -1], True)):
        f = setup_filter([1, 3, 3, 1], separable=sep).to(DEVICE)
        x = _layout(torch.randn(2, 3, 6, 7, device=DEVICE, dtype=torch.float64), layout).requires_grad_()
        fn = lambda x: upfirdn2d(x, f, up, down, pad, gain=2)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


@cuda_only("streams")
def test_side_stream():
    torch.manual_seed(6)
    f = setup_filter([1, 3, 3, 1]).to(DEVICE)
    for x in (torch.randn(4, 16, 32, 32, device=DEVICE),
              torch.randn(4, 16, 32, 32, device=DEVICE).to(memory_format=torch.channels_last),
              torch.randn(2, 3, 17, 9, device=DEVICE, dtype=torch.float64)):
        side_stream_matches(lambda t: upfirdn2d(t, f, 2, 1, [2, 1, 2, 1], gain=4), x)


def test_opcheck_and_compile():
    f = setup_filter([1, 3, 3, 1]).to(DEVICE)
    x = torch.randn(2, 3, 5, 6, device=DEVICE, dtype=torch.float64, requires_grad=True)
    opcheck(torch.ops.fastgan.upfirdn2d.default, (x, f, 2, 2, 1, 1, 2, 1, 2, 1, False, 4.0))
    fs = setup_filter([1, 3, 3, 1], separable=True).to(DEVICE)
    opcheck(torch.ops.fastgan.upfirdn2d.default, (x.to(memory_format=torch.channels_last), fs, 1, 1, 2, 2, 1, 1, 1, 1, True, 1.0))
    if ON_CPU:
        return  # inductor's CPU backend compiles C++: slow here, and not what this file tests

    def fn(x):
        return upfirdn2d(upfirdn2d(x, fs, up=2, padding=[2, 1, 2, 1], gain=4).relu(), fs, down=2, padding=1)

    xx = torch.randn(2, 4, 8, 8, device=DEVICE, requires_grad=True)
    eager = fn(xx)
    out = torch.compile(fn, fullgraph=True)(xx)
    torch.testing.assert_close(out, eager)


def test_errors():
    x = torch.randn(1, 2, 6, 6, device=DEVICE)
    f = setup_filter([1, 3, 3, 1]).to(DEVICE)
    with pytest.raises(ValueError, match="crops everything"):
        torch.ops.fastgan.upfirdn2d(x, f, 1, 1, 1, 1, -2, -2, 0, 0, False, 1.0)
    if not ON_CPU:
        with pytest.raises(ValueError, match="f is on"):
            torch.ops.fastgan.upfirdn2d(x, f.cpu(), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
