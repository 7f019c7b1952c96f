"""CUDA kernels of fir_bias_act / fir_bias_act_grad, through upsample_conv2d and
downsample_conv2d and called directly, against float64 pure-PyTorch references (on the
CPU). Skipped without a GPU; FASTGAN_TEST_CUDA_ON_CPU=1 runs the same tests on the CPU
kernels (tests/cuda_device.py)."""

import pytest
import torch

from fastgan.ops import (
    ACTIVATIONS,
    bias_act_ref,
    downsample_conv2d,
    downsample_conv2d_ref,
    upsample_conv2d,
    upsample_conv2d_ref,
)
from fastgan.ops._fir import parse_filter
from fastgan.ops.fir_bias_act import _fir_filter_ref
from tests.cuda_device import DEVICE, MARKS, cuda_only, side_stream_matches, tf32_off

pytestmark = MARKS

# Error bounds relative to max(1, max |reference|); `close` multiplies them by a factor per
# quantity. float64: rounding only (~1e-16 per operation). float32 (TF32 off, see
# _full_fp32): ~1e-7 per operation over sums of ~200 products, with room for cuDNN's
# Winograd/FFT algorithms. float16 / bfloat16: the inputs, the transposed convolution's
# output and y are rounded to 11 / 8 significant bits (2^-11 = 4.9e-4, 2^-8 = 3.9e-3
# relative); measured on the CPU kernels: y within ~1 TOL, gradients within ~0.3 TOL.
# Elements whose pre-activation may round across a kink get no upstream gradient
# (kink_free_gy), since there the derivative itself differs by O(gain).
TOL = {torch.float32: 1e-4, torch.float64: 1e-10, torch.float16: 5e-3, torch.bfloat16: 4e-2}


@pytest.fixture(autouse=True)
def _full_fp32():
    with tf32_off():
        yield


def close(a, b, dtype, scale=1.0, what=""):
    err = (a.double().cpu() - b.double().cpu()).abs().max().item()
    ref = max(1.0, b.double().abs().max().item())
    assert err <= TOL[dtype] * scale * ref, (what, err, TOL[dtype] * scale * ref)


def grads(fn, x, w, b, gy=None, gy_seed=3, **kw):
    x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
    b = None if b is None else b.detach().requires_grad_()
    y = fn(x, w, b, **kw)
    if gy is None:
        gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(gy_seed), dtype=torch.float64)
    gs = torch.autograd.grad(y, [t for t in (x, w, b) if t is not None], gy.to(y))
    return y, gs


EPS = {torch.float64: 2.0**-53, torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
KINK_AT_ZERO = ("relu", "lrelu", "selu")  # f' jumps at z = 0 (elu, with alpha 1, does not)


def kink_free_gy(fn, ref, x, w, b, inputs, dtype, act, clamp, seed=3, **kw):
    """A random upstream gradient, zero where the kernel's pre-activation z may lie on the
    other side of a kink (of the activation at 0, or of the clamp) than the reference's:
    there the derivatives differ by O(gain) and no tolerance separates that from a bug.
    `inputs` are fn's (rounded) x, w, b; fn with a linear activation gives the kernel's z
    rounded to `dtype`, within one ulp of the value the kernel compared."""
    with torch.no_grad():
        z = ref(x, w, b, act="linear", gain=1.0, **kw)
        zk = fn(*inputs, act="linear", gain=1.0, **kw).double().cpu()
        u = ref(x, w, b, act=act, **kw)  # gain * act(z), not clamped
    dz = 2 * ((zk - z).abs() + 2 * EPS[dtype] * zk.abs()) + 1e-12
    near = torch.zeros(z.shape, dtype=torch.bool)
    if act in KINK_AT_ZERO:
        near |= z.abs() <= dz
    if clamp is not None:
        near |= (u.abs() - clamp).abs() <= 3 * dz  # |du/dz| <= gain * 1.76 < 3
    gy = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return gy.masked_fill(near, 0.0)


def _layout(t, cl):
    return t.contiguous(memory_format=torch.channels_last) if cl else t.contiguous()


@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("f", [(1, 3, 3, 1), [[1, 2, 1], [2, 4, 2], [1, 2, 1]]])
def test_up_cuda_vs_cpu(act, dtype, cl, f):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 24, 7, 9, generator=g, dtype=torch.float64)
    w = torch.randn(24, 24, 3, 3, generator=g, dtype=torch.float64) * 0.2
    b = torch.randn(24, generator=g, dtype=torch.float64)
    inputs = (_layout(x.to(DEVICE, dtype), cl), w.to(DEVICE, dtype), b.to(DEVICE, dtype))
    gy = kink_free_gy(upsample_conv2d, upsample_conv2d_ref, x, w, b, inputs, dtype, act, 1.2, f=f)
    yr, gr = grads(upsample_conv2d_ref, x, w, b, gy, act=act, clamp=1.2, f=f)
    y, gs = grads(upsample_conv2d, *inputs, gy, act=act, clamp=1.2, f=f)
    assert y.device.type == DEVICE and y.dtype == dtype
    assert y.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    close(y, yr, dtype, 4, "y")
    for name, a, r in zip(("x", "w", "b"), gs, gr):
        assert a.dtype == dtype
        close(a, r, dtype, 4, "grad " + name)


# (up or down, f, kernel size, padding): up/down > 2, 8-tap and full 2-D filters, and
# paddings that leave a negative (cropping) FIR padding after the convolution's share.
_F5 = [[1, 2, 3, 2, 1], [2, 3, 5, 3, 2], [1, 4, 6, 4, 1], [2, 3, 5, 3, 2], [1, 2, 3, 2, 1]]
_F8 = (1, 3, 5, 7, 7, 5, 3, 1)
BLOCK_CASES = {
    "up3_f8": ("up", 3, _F8, 3, None),
    "up4_f5x5": ("up", 4, _F5, 3, None),
    "up3_f8_crop": ("up", 3, _F8, 3, -4),  # FIR padding [0, -1, 0, -1]
    "up2_k5_pad0": ("up", 2, (1, 3, 3, 1), 5, 0),
    "up2_k4_f2x2": ("up", 2, [[1, 2], [3, 4]], 4, (1, 2)),
    "down3_f8": ("down", 3, _F8, 3, None),
    "down3_f8_crop": ("down", 3, _F8, 3, -3),  # FIR padding [0, -1, 0, -1]
    "down2_f5x5_pad0": ("down", 2, _F5, 3, 0),
    "down4_f2": ("down", 4, (1, 1), 1, (0, 1)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("case", list(BLOCK_CASES))
def test_block_geometries(case, cl, dtype):
    kind, factor, f, k, padding = BLOCK_CASES[case]
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 6, 13, 14, generator=g, dtype=torch.float64)
    w = torch.randn(5, 6, k, k, generator=g, dtype=torch.float64) * 0.3
    b = torch.randn(5, generator=g, dtype=torch.float64)
    fn, ref = (upsample_conv2d, upsample_conv2d_ref) if kind == "up" else (downsample_conv2d, downsample_conv2d_ref)
    kw = dict(f=f, act="lrelu", clamp=2.5, padding=padding)
    kw["up" if kind == "up" else "down"] = factor
    inputs = (_layout(x.to(DEVICE, dtype), cl), w.to(DEVICE, dtype), b.to(DEVICE, dtype))
    geometry = {k: v for k, v in kw.items() if k not in ("act", "clamp")}
    gy = kink_free_gy(fn, ref, x, w, b, inputs, dtype, "lrelu", 2.5, **geometry)
    yr, gr = grads(ref, x, w, b, gy, **kw)
    y, gs = grads(fn, *inputs, gy, **kw)
    assert y.shape == yr.shape and y.dtype == dtype
    close(y, yr, dtype, 1, "y")
    for name, a, r in zip(("x", "w", "b"), gs, gr):
        close(a, r, dtype, 10, "grad " + name)


@pytest.mark.parametrize("act,clamp", [("tanh", None), ("lrelu", 0.9), ("swish", 1.5)])
@pytest.mark.parametrize("cl", [False, True])
def test_down_and_second_order_cuda(cl, act, clamp):
    """Gradients of gradients through upsample_conv2d (fir_bias_act's and
    fir_bias_act_grad's autograd) and downsample_conv2d, against the references."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 8, 9, 10, generator=g, dtype=torch.float64)
    wu0 = torch.randn(6, 8, 3, 3, generator=g, dtype=torch.float64) * 0.3
    bu0 = torch.randn(6, generator=g, dtype=torch.float64) * 0.5
    wd0 = torch.randn(5, 6, 3, 3, generator=g, dtype=torch.float64) * 0.3
    outs = []
    for dev, up, down in ((DEVICE, upsample_conv2d, downsample_conv2d),
                          ("cpu", upsample_conv2d_ref, downsample_conv2d_ref)):
        x = _layout(x0.to(dev), cl and dev == DEVICE).requires_grad_()
        wu, bu, wd = (t.to(dev).requires_grad_() for t in (wu0, bu0, wd0))
        h = up(x, wu, bu, act=act, clamp=clamp)
        y = down(h, wd, act="lrelu", clamp=0.9)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        outs.append((y,) + torch.autograd.grad(gx.square().sum(), (x, wu, bu, wd)))
    for name, a, r in zip(("y", "x", "wu", "bu", "wd"), *outs):
        assert a.device.type == DEVICE
        close(a, r, torch.float64, 1, name)


# --------------------------------------------------------------------- the ops directly

# name -> (shape, channels_last, filter, pad). Comments: the path the gradient kernel's
# bias reduction takes (csrc/cuda/fir_bias_act.cu, GradMap).
DIRECT_CASES = {
    "planes_small": ((3, 5, 6, 7), False, (1, 3, 3, 1), [1, 2, 2, 1]),  # 6 planes per block
    "planes_large": ((2, 3, 40, 37), False, [[1, 2, 1], [2, 5, 2], [1, 2, 1]], [-1, 0, 1, 2]),  # chunks
    "cl_c3": ((4, 3, 17, 19), True, _F8, [3, 4, 4, 3]),  # 85 rows per step
    "cl_c64_steps": ((2, 64, 40, 40), True, (1, 3, 3, 1), [2, 1, 2, 1]),  # 2 steps per block
    "cl_c300": ((2, 300, 20, 20), True, [[1, 2], [3, 4]], [0, 1, 1, 0]),  # 2 column tiles, 2 steps
}
DIRECT_ACTS = [("linear", -1.0), ("lrelu", 0.8), ("swish", 1.1)]  # nothing / mask / z saved


def _direct_inputs(case, dtype, act, clamp, seed=5):
    shape, cl, f, pad = DIRECT_CASES[case]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(shape[1], generator=g, dtype=torch.float64).to(dtype)
    fir = parse_filter(f, 1.0, False, "test")
    spec = ACTIVATIONS[act]
    args = (fir.taps, fir.fh, fir.fw, fir.separable, pad, act, spec.def_alpha, spec.def_gain, clamp)
    return x, b, fir, pad, args, cl, g


def _direct_ref(x, b, fir, pad, act, clamp):
    spec = ACTIVATIONS[act]
    t = _fir_filter_ref(x, fir.conv2d, pad)
    return bias_act_ref(t, b, 1, act, spec.def_alpha, spec.def_gain, None if clamp < 0 else clamp)


def _direct_gy(x, b, fir, pad, act, clamp, dtype, g):
    """A random upstream gradient in `dtype`, zero where the kernel may take the other side
    of a kink than the float64 reference (see kink_free_gy): z within a few roundings of 0
    (sums of coarse half-precision values cancel exactly), or |y| of the clamp (for smooth
    activations the backward recomputes it from z saved in `dtype`). The filters here are
    positive, so FIR(|x|) + |b| bounds the magnitudes that z's rounding scales with."""
    x64, b64 = x.double(), b.double()
    z = _fir_filter_ref(x64, fir.conv2d, pad) + b64.view(1, -1, 1, 1)
    s = _fir_filter_ref(x64.abs(), fir.conv2d, pad) + b64.abs().view(1, -1, 1, 1)
    dz = 8 * max(EPS[dtype], 2.0**-24 if dtype != torch.float64 else 0.0) * s
    near = (z.abs() <= dz) if act in KINK_AT_ZERO else torch.zeros(z.shape, dtype=torch.bool)
    if clamp >= 0:
        u = _direct_ref(x64, b64, fir, pad, act, -1.0)
        near |= (u.abs() - clamp).abs() <= 3 * dz
    gy = torch.randn(z.shape, generator=g, dtype=torch.float64).masked_fill(near, 0.0)
    return gy.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("act,clamp", DIRECT_ACTS)
@pytest.mark.parametrize("case", list(DIRECT_CASES))
def test_fir_bias_act_direct(case, act, clamp, dtype):
    """fir_bias_act and fir_bias_act_grad (gx and the bias gradient) on the reduction
    layouts, against float64 autograd through the reference on the same (rounded) inputs."""
    x, b, fir, pad, args, cl, g = _direct_inputs(case, dtype, act, clamp)
    xd = _layout(x.to(DEVICE), cl)
    y, saved = torch.ops.fastgan.fir_bias_act(xd, b.to(DEVICE), *args)
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    x64, b64 = x.double().requires_grad_(), b.double().requires_grad_()
    yr = _direct_ref(x64, b64, fir, pad, act, clamp)
    gy = _direct_gy(x, b, fir, pad, act, clamp, dtype, g)
    gxr, gbr = torch.autograd.grad(yr, (x64, b64), gy.double())
    gx, gb = torch.ops.fastgan.fir_bias_act_grad(
        _layout(gy.to(DEVICE), cl), saved, None, *args[:5], x.shape[2], x.shape[3], *args[5:], True)
    assert gx.dtype == dtype and gb.dtype == dtype and gb.shape == (x.shape[1],)
    # Half types: y, gx and gb are rounded once at the end (fp32 accumulation), so a few
    # ulps of the result; gb sums up to N * H * W terms of |g| <= gain * |gy|.
    scale = {torch.float64: 1.0, torch.float32: 0.1, torch.float16: 0.4, torch.bfloat16: 0.4}[dtype]
    close(y, yr, dtype, scale, "y")
    close(gx, gxr, dtype, scale, "gx")
    abs_sum = (gy.double().abs() * 2.0).sum((0, 2, 3)).max().item()
    err = (gb.double().cpu() - gbr).abs().max().item()
    tol = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
    assert err <= tol * max(abs_sum, gbr.abs().max().item()), ("gb", err, abs_sum)


@pytest.mark.parametrize("case", list(DIRECT_CASES))
def test_fir_grad_deterministic(case):
    """The bias gradient is reduced without atomics: two runs are bitwise equal."""
    x, b, fir, pad, args, cl, g = _direct_inputs(case, torch.float32, "swish", 1.1)
    y, saved = torch.ops.fastgan.fir_bias_act(_layout(x.to(DEVICE), cl), b.to(DEVICE), *args)
    gy = _layout(torch.randn(y.shape, generator=g).to(DEVICE), cl)
    gz = _layout(torch.randn(y.shape, generator=g).to(DEVICE), cl)

    def run():
        return torch.ops.fastgan.fir_bias_act_grad(
            gy, saved, gz, *args[:5], x.shape[2], x.shape[3], *args[5:], True)

    first = run()
    for _ in range(2):
        again = run()
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


@cuda_only("streams")
@pytest.mark.parametrize("case", ["planes_large", "cl_c64_steps"])
def test_side_stream(case):
    x, b, fir, pad, args, cl, g = _direct_inputs(case, torch.float32, "swish", 1.1)
    x = _layout(x.to(DEVICE), cl)
    b = b.to(DEVICE)
    y, saved = torch.ops.fastgan.fir_bias_act(x, b, *args)
    gy = _layout(torch.randn(y.shape, generator=g).to(DEVICE), cl)
    side_stream_matches(lambda x, b: torch.ops.fastgan.fir_bias_act(x, b, *args), x, b)
    side_stream_matches(
        lambda gy, saved: torch.ops.fastgan.fir_bias_act_grad(
            gy, saved, None, *args[:5], x.shape[2], x.shape[3], *args[5:], True),
        gy, saved)


def test_fir_grad_empty_and_cropped_source():
    """No channels (nothing to launch), and an output that crops most of the input."""
    fir = parse_filter((1, 3, 3, 1), 1.0, False, "t")
    x = torch.randn(2, 0, 6, 6, device=DEVICE)
    y, saved = torch.ops.fastgan.fir_bias_act(x, torch.zeros(0, device=DEVICE), fir.taps, 4, 4, True, [0, 0, 0, 0], "lrelu", 0.2, 1.0, -1.0)
    gx, gb = torch.ops.fastgan.fir_bias_act_grad(torch.zeros_like(y), saved, None, fir.taps, 4, 4, True, [0, 0, 0, 0], 6, 6, "lrelu", 0.2, 1.0, -1.0, True)
    assert y.shape == (2, 0, 3, 3) and gx.shape == (2, 0, 6, 6) and gb.shape == (0,)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float64)
    pad = [-4, -3, -5, -2]
    x64, b64 = x.clone().requires_grad_(), b.clone().requires_grad_()
    yr = _direct_ref(x64, b64, fir, pad, "lrelu", -1.0)
    gy = torch.randn(yr.shape, dtype=torch.float64)
    gxr, gbr = torch.autograd.grad(yr, (x64, b64), gy)
    y, saved = torch.ops.fastgan.fir_bias_act(x.to(DEVICE), b.to(DEVICE), fir.taps, 4, 4, True, pad, "lrelu", 0.2, 2**0.5, -1.0)
    gx, gb = torch.ops.fastgan.fir_bias_act_grad(gy.to(DEVICE), saved, None, fir.taps, 4, 4, True, pad, 12, 12, "lrelu", 0.2, 2**0.5, -1.0, True)
    close(y, yr, torch.float64)
    close(gx, gxr, torch.float64)
    close(gb, gbr, torch.float64)


def test_opcheck_cuda():
    fir = parse_filter((1, 3, 3, 1), 4.0, False, "t")
    x = torch.randn(2, 3, 7, 6, device=DEVICE, requires_grad=True)
    b = torch.randn(3, device=DEVICE, requires_grad=True)
    args = (x, b, fir.taps, fir.fh, fir.fw, fir.separable, [1, 2, 2, 0], "lrelu", 0.2, 1.4, 0.5)
    torch.library.opcheck(torch.ops.fastgan.fir_bias_act.default, args)
    y, saved = torch.ops.fastgan.fir_bias_act(*args)
    gy = torch.randn_like(y)
    gargs = (gy, saved, None, fir.taps, fir.fh, fir.fw, fir.separable, [1, 2, 2, 0], 7, 6, "lrelu", 0.2, 1.4, 0.5, True)
    torch.library.opcheck(torch.ops.fastgan.fir_bias_act_grad.default, gargs)
