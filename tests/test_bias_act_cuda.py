"""CUDA kernels of torch.ops.fastgan.bias_act / bias_act_grad, called directly, against the
CPU op on the same inputs and against a float64 pure-PyTorch reference (autograd for the
derivatives from x, the documented formulas for the derivatives from y).

Skipped unless a CUDA device is present and fastgan._C has CUDA kernels;
FASTGAN_TEST_CUDA_ON_CPU=1 runs the same tests on the CPU kernels (tests/cuda_device.py).
"""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from tests.cuda_device import DEVICE, MARKS, cuda_only, side_stream_matches

pytestmark = MARKS

DEV = DEVICE
ACTS = ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish", "gelu"]
FROM_Y = [a for a in ACTS if a not in ("swish", "gelu")]  # derivative recoverable from y
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
TOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 1e-2, torch.bfloat16: 1e-2}
# Exactly representable in every dtype, so that a clamped y equals clamp in all of them and
# the kernels' float parameters equal the reference's doubles.
ALPHA, GAIN, CLAMP = 0.25, 1.25, 0.875



@cuda_only("the build's CUDA kernels")
def test_cuda_kernels_are_built():
    """On a GPU machine the CUDA kernels must be there: a build without them fails here
    instead of skipping the file (or, where the ops fall back, comparing the reference
    with itself)."""
    import fastgan._backend as backend

    info = backend.backend_info()
    assert info["extension_loaded"], info["extension_error"]
    assert info["cuda_kernels"], f"fastgan._C was built without CUDA kernels ({info['cuda_reason']})"


SELU_SCALE = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


def test_bias_act_has_a_cuda_kernel():
    assert torch._C._dispatch_has_kernel_for_dispatch_key("fastgan::bias_act", "CUDA")


def _op_fwd(x, b, dim, act, clamp):
    return torch.ops.fastgan.bias_act(x, b, dim, act, ALPHA, GAIN, clamp)


def _op_grad(g, ref, b, dim, act, clamp, ref_is_y, order, reduce):
    return torch.ops.fastgan.bias_act_grad(
        g, ref, b, dim, act, ALPHA, GAIN, clamp, ref_is_y, order, reduce
    )


# --------------------------------------------------------------------------- inputs

# name -> (shape, dim, memory layout). Comments: which kernel path the case reaches.
CASES = {
    "nchw": ((2, 3, 16, 16), 1, "contiguous"),  # inner 256: row reduction, vector loads
    "nchw_long_rows": ((1, 2, 50, 90), 1, "contiguous"),  # inner 4500: several segments
    "odd": ((3, 5, 7, 9), 1, "contiguous"),  # inner 63: matrix reduction, width 315
    "channels_last": ((4, 16, 5, 7), 1, "channels_last"),  # inner 1, 140 rows: 3 chunks
    "channels_last_odd": ((2, 7, 3, 5), 1, "channels_last"),  # width 7: scalar columns
    "channels_last_c3": ((4, 3, 9, 11), 1, "channels_last"),  # 3 channels: few columns
    "channels_last_c3_long": ((2, 3, 30, 40), 1, "channels_last"),  # C = 3, 38 row chunks
    "dim2": ((2, 3, 6, 5), 2, "contiguous"),  # inner 5: vectors span channels
    "2d": ((70, 24), 1, "contiguous"),  # (N, C)
    "2d_dim0": ((24, 70), 0, "contiguous"),  # inner 70, not a multiple of the vector
    "1d": ((37,), 0, "contiguous"),  # one row
    "unaligned": ((2, 3, 16, 16), 1, "offset"),  # x = buf[1:].view(...): scalar paths
    "unaligned_channels_last": ((2, 16, 5, 7), 1, "offset_channels_last"),
    "no_bias": ((2, 3, 8, 8), 1, "no_bias"),
    "strided": ((3, 4, 6, 10), 1, "strided"),  # not dense: copied to a dense layout first
    "strided_cl": ((3, 4, 6, 10), 1, "strided_channels_last"),
}
EMPTY_CASES = {"empty_batch": ((0, 4, 3, 3), 1), "empty_spatial": ((2, 4, 0, 5), 1)}


def _make(shape, layout, dtype, scale=2.0):
    """A random tensor of `shape` in the given memory layout (on the GPU)."""
    if layout in ("contiguous", "no_bias"):
        return (torch.randn(shape, device=DEV) * scale).to(dtype)
    if layout == "channels_last":
        t = (torch.randn(shape, device=DEV) * scale).to(dtype)
        return t.contiguous(memory_format=torch.channels_last)
    n = math.prod(shape)
    buf = (torch.randn(n + 1, device=DEV) * scale).to(dtype)
    if layout == "offset":
        return buf[1:].view(shape)
    if layout == "offset_channels_last":
        nb, c, h, w = shape
        return buf[1:].view(nb, h, w, c).permute(0, 3, 1, 2)
    if layout == "strided":  # every other column of a wider tensor
        nb, c, h, w = shape
        return (torch.randn(nb, c, h, 2 * w, device=DEV) * scale).to(dtype)[..., ::2]
    if layout == "strided_channels_last":  # a channel slice of a channels_last tensor
        nb, c, h, w = shape
        t = (torch.randn(nb, c + 3, h, w, device=DEV) * scale).to(dtype)
        return t.contiguous(memory_format=torch.channels_last)[:, 1 : c + 1]
    raise ValueError(layout)


def _same_layout(like, values):
    """A tensor with the sizes, strides and storage offset of `like`, holding `values`."""
    n = like.untyped_storage().nbytes() // like.element_size()
    buf = torch.empty(n, dtype=like.dtype, device=like.device)
    out = buf.as_strided(like.shape, like.stride(), like.storage_offset())
    out.copy_(values)
    return out


def _case(name, dtype):
    shape, dim, layout = CASES[name]
    x = _make(shape, layout, dtype)
    b = None if layout == "no_bias" else torch.randn(shape[dim], device=DEV).to(dtype)
    # No pre-activation exactly at a kink (z = 0, frequent in half precision): there the
    # one-sided derivatives differ and autograd's choice is a convention.
    x.masked_fill_(_z(x, b, dim) == 0, 0.375)
    return x, b, dim


def _bshape(x, dim):
    s = [1] * x.dim()
    s[dim] = -1
    return s


# ------------------------------------------------------------------------- reference


def _f(act, z):
    if act == "linear":
        return z
    if act == "relu":
        return torch.relu(z)
    if act == "lrelu":
        return F.leaky_relu(z, ALPHA)
    if act == "tanh":
        return torch.tanh(z)
    if act == "sigmoid":
        return torch.sigmoid(z)
    if act == "elu":
        return F.elu(z)
    if act == "selu":
        return F.selu(z)
    if act == "softplus":  # no threshold shortcut, unlike F.softplus
        return torch.logaddexp(z, torch.zeros_like(z))
    if act == "swish":
        return z * torch.sigmoid(z)
    if act == "gelu":
        return F.gelu(z)
    raise ValueError(act)


def _z(x, b, dim):
    z = x.double()
    return z if b is None else z + b.double().view(_bshape(x, dim))


def ref_forward(x, b, dim, act, clamp):
    y = _f(act, _z(x, b, dim)) * GAIN
    return y.clamp(-clamp, clamp) if clamp >= 0 else y


def _d1_from_y(act, a):
    one = torch.ones_like(a)
    if act == "linear":
        return one
    if act == "relu":
        return (a > 0).double()
    if act == "lrelu":
        return torch.where(a > 0, one, one * ALPHA)
    if act == "tanh":
        return 1 - a * a
    if act == "sigmoid":
        return a * (1 - a)
    if act == "elu":
        return torch.where(a > 0, one, a + 1)
    if act == "selu":
        return torch.where(a > 0, one * SELU_SCALE, a + SELU_SCALE * SELU_ALPHA)
    if act == "softplus":
        return -torch.expm1(-a)
    raise ValueError(act)


def _d2_from_y(act, a):  # d/da of _d1_from_y
    zero = torch.zeros_like(a)
    if act in ("linear", "relu", "lrelu"):
        return zero
    if act == "tanh":
        return -2 * a
    if act == "sigmoid":
        return 1 - 2 * a
    if act in ("elu", "selu"):
        return torch.where(a > 0, zero, zero + 1)
    if act == "softplus":
        return torch.exp(-a)
    raise ValueError(act)


def ref_factor(ref, b, dim, act, clamp, ref_is_y, order):
    """d^order y / d ref^order (order 2 from y: the derivative of the order-1 factor)."""
    if ref_is_y:
        y = ref.double()
        a = y / GAIN
        factor = GAIN * _d1_from_y(act, a) if order == 1 else _d2_from_y(act, a)
        s = y
    else:
        z = _z(ref, b, dim).detach().clone().requires_grad_()  # never the caller's tensor
        with torch.enable_grad():
            fz = _f(act, z)
            (d,) = torch.autograd.grad(fz.sum(), z, create_graph=order == 2)
            if order == 2:
                d = (
                    torch.autograd.grad(d.sum(), z, allow_unused=True)[0]
                    if d.requires_grad
                    else None
                )
        factor = GAIN * (d.detach() if d is not None else torch.zeros_like(z))
        s = GAIN * fz.detach()
    if clamp >= 0:
        factor = torch.where(s.abs() < clamp, factor, torch.zeros_like(factor))
    return factor


def _other_dims(x, dim):
    return [d for d in range(x.dim()) if d != dim]


def assert_close(actual, expected, dtype, what):
    if expected.numel() == 0:
        assert actual.numel() == 0, what
        return
    torch.testing.assert_close(
        actual.double(),
        expected.double(),
        rtol=TOL[dtype],
        atol=TOL[dtype],
        msg=lambda m: f"{what}: {m}",
    )


def assert_sums_close(sums, expected, abs_sum, dtype, what):
    """Channel sums, with an error bound relative to the sum of magnitudes (cancellation)."""
    err = (sums.double() - expected).abs()
    bound = TOL[dtype] * (abs_sum + 1)
    assert bool((err <= bound).all()), f"{what}: errors {err.tolist()} > bounds {bound.tolist()}"


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("act", ACTS)
def test_forward(act, dtype):
    torch.manual_seed(0)
    for name in CASES:
        x, b, dim = _case(name, dtype)
        for clamp in (-1.0, CLAMP):
            what = f"{name} clamp={clamp}"
            y = _op_fwd(x, b, dim, act, clamp)
            assert y.shape == x.shape and y.dtype == dtype and y.device == x.device, what
            assert_close(y, ref_forward(x, b, dim, act, clamp), dtype, what)
            y_cpu = _op_fwd(x.cpu(), None if b is None else b.cpu(), dim, act, clamp)
            assert_close(y.cpu(), y_cpu, dtype, what + " (vs CPU op)")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("act", ACTS)
def test_grad(act, dtype):
    torch.manual_seed(0)
    for name in CASES:
        x, b, dim = _case(name, dtype)
        g = _same_layout(x, torch.randn(x.shape, device=DEV))
        for clamp in (-1.0, CLAMP):
            for ref_is_y in (False, True) if act in FROM_Y else (False,):
                if ref_is_y:
                    ref = _same_layout(x, ref_forward(x, b, dim, act, clamp))
                    bb = None
                else:
                    ref, bb = x, b
                for order in (1, 2):
                    what = f"{name} clamp={clamp} ref_is_y={ref_is_y} order={order}"
                    factor = ref_factor(ref, bb, dim, act, clamp, ref_is_y, order)
                    expected = g.double() * factor
                    bb_cpu = None if bb is None else bb.cpu()
                    cpu = _op_grad(
                        g.cpu(), ref.cpu(), bb_cpu, dim, act, clamp, ref_is_y, order, False
                    )[0]
                    for reduce in (False, True):
                        w = f"{what} reduce={reduce}"
                        out, sums = _op_grad(
                            g, ref, bb, dim, act, clamp, ref_is_y, order, reduce
                        )
                        assert out.shape == x.shape and out.dtype == dtype, w
                        assert_close(out, expected, dtype, w)
                        assert_close(out.cpu(), cpu, dtype, w + " (vs CPU op)")
                        if not reduce:
                            assert sums.numel() == 0, w
                            continue
                        assert sums.shape == (x.shape[dim],) and sums.dtype == dtype, w
                        dims = _other_dims(x, dim)
                        abs_sum = expected.abs().sum(dims) if dims else expected.abs()
                        exp_sums = expected.sum(dims) if dims else expected
                        assert_sums_close(sums, exp_sums, abs_sum, dtype, w)
                        own = out.double().sum(dims) if dims else out.double()
                        assert_sums_close(sums, own, abs_sum, dtype, w + " (vs own out)")


@pytest.mark.parametrize("name", ["nchw_long_rows", "channels_last", "odd", "channels_last_c3_long"])
def test_grad_reduce_is_deterministic(name):
    torch.manual_seed(1)
    x, b, dim = _case(name, torch.float32)
    g = torch.randn_like(x)
    first = _op_grad(g, x, b, dim, "gelu", -1.0, False, 1, True)
    for _ in range(3):
        again = _op_grad(g, x, b, dim, "gelu", -1.0, False, 1, True)
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(EMPTY_CASES))
def test_empty(name, dtype):
    shape, dim = EMPTY_CASES[name]
    x = torch.empty(shape, device=DEV, dtype=dtype)
    b = torch.randn(shape[dim], device=DEV).to(dtype)
    y = _op_fwd(x, b, dim, "lrelu", CLAMP)
    assert y.shape == x.shape and y.dtype == dtype
    out, sums = _op_grad(x, x, b, dim, "lrelu", CLAMP, False, 1, True)
    assert out.shape == x.shape
    assert sums.shape == (shape[dim],) and bool((sums == 0).all())
    out, sums = _op_grad(x, x, None, dim, "tanh", -1.0, True, 2, False)
    assert out.shape == x.shape and sums.numel() == 0


def _away_from_kinks(x, b, dim, act, clamp):
    """x with the elements whose pre-activation lies within 1e-4 of a kink (z = 0, or
    |y| = clamp) moved to z = 0.3: there a float32 rounding of z or y flips the
    derivative, and among millions of elements some always lie that close."""
    z = _z(x, b, dim)
    y = (_f(act, z) * GAIN).abs()
    bad = (z.abs() < 1e-4) | ((y - clamp).abs() < 1e-4)
    safe = (0.3 - b.double().view(_bshape(x, dim))).expand_as(z)
    return torch.where(bad, safe, x.double()).to(x.dtype).contiguous(memory_format=torch.channels_last)


def test_many_rows_column_reduction():
    """channels_last with N * H * W = 4.5M rows > 65535 * 64: the column reduction's loop
    over chunks (gridDim.y is capped at 65535) runs a second round."""
    torch.manual_seed(7)
    shape = (2, 3, 1500, 1500)
    b = torch.randn(3, device=DEV)
    x = _away_from_kinks(_make(shape, "channels_last", torch.float32), b, 1, "lrelu", CLAMP)
    g = torch.randn(shape, device=DEV).contiguous(memory_format=torch.channels_last)
    y = _op_fwd(x, b, 1, "lrelu", CLAMP)
    assert_close(y, ref_forward(x, b, 1, "lrelu", CLAMP), torch.float32, "forward")
    del y
    out, sums = _op_grad(g, x, b, 1, "lrelu", CLAMP, False, 1, True)
    z = _z(x, b, 1)
    factor = torch.where(z > 0, 1.0, ALPHA) * GAIN
    factor = torch.where((F.leaky_relu(z, ALPHA) * GAIN).abs() < CLAMP, factor, 0.0)
    expected = g.double() * factor
    del z, factor
    assert_close(out, expected, torch.float32, "grad")
    dims = [0, 2, 3]
    assert_sums_close(sums, expected.sum(dims), expected.abs().sum(dims), torch.float32, "sums")


@cuda_only("streams")
def test_side_stream():
    torch.manual_seed(8)
    for name in ("nchw_long_rows", "channels_last", "odd", "channels_last_c3"):
        x, b, dim = _case(name, torch.float32)
        g = _same_layout(x, torch.randn(x.shape, device=DEV))
        side_stream_matches(lambda x, b: _op_fwd(x, b, dim, "gelu", CLAMP), x, b)
        for order, reduce in ((1, True), (2, True), (1, False)):
            side_stream_matches(
                lambda g, x, b: _op_grad(g, x, b, dim, "gelu", CLAMP, False, order, reduce), g, x, b)


@cuda_only("a 12 GiB CUDA test")
def test_int64_indexing_float16():
    """numel > 2^31 (64-bit index path). Mostly zeros with random windows, one of them
    across flat index 2^31, which is also close to a channel boundary."""
    free, _ = torch.cuda.mem_get_info()
    if free < 12 * 2**30:
        pytest.skip(f"needs 12 GiB of free GPU memory, has {free / 2**30:.1f} GiB")
    torch.manual_seed(0)
    channels, inner = 5, 2**29 + 3  # channel 3 ends at 4 * inner = 2^31 + 12
    numel = channels * inner
    assert numel > 2**31
    windows = [(0, 4096), (2**31 - 8192, 2**31 + 8192), (numel - 4096, numel)]
    flat = torch.zeros(numel, dtype=torch.float16, device=DEV)
    for lo, hi in windows:  # non-negative, so that the channel sums cannot cancel
        flat[lo:hi] = torch.randn(hi - lo, device=DEV).abs().half()
    x = flat.view(channels, inner)
    b = (torch.randn(channels, device=DEV) * 0.5).half()
    idx = torch.cat(
        [torch.arange(lo, hi, device=DEV) for lo, hi in windows]
        + [torch.randint(0, numel, (1 << 16,), device=DEV)]
    )
    z = flat[idx].double() + b.double()[idx // inner]

    y = _op_fwd(x, b, 0, "lrelu", -1.0)
    assert_close(y.view(-1)[idx], F.leaky_relu(z, ALPHA) * GAIN, torch.float16, "forward")
    del y

    factor = torch.where(z > 0, 1.0, ALPHA) * GAIN
    expected = flat[idx].double() * factor
    for reduce in (False, True):
        out, sums = _op_grad(x, x, b, 0, "lrelu", -1.0, False, 1, reduce)
        assert_close(out.view(-1)[idx], expected, torch.float16, f"grad reduce={reduce}")
        del out
        if reduce:  # only the windows are non-zero
            win = torch.cat([torch.arange(lo, hi, device=DEV) for lo, hi in windows])
            zw = flat[win].double() + b.double()[win // inner]
            vals = flat[win].double() * torch.where(zw > 0, 1.0, ALPHA) * GAIN
            exp_sums = torch.zeros(channels, dtype=torch.float64, device=DEV)
            exp_sums.index_add_(0, win // inner, vals)
            assert_sums_close(sums, exp_sums, exp_sums, torch.float16, "grad sums")
