"""upsample_conv2d / downsample_conv2d (fir_bias_act, fir_bias_act_grad): kernels against
the unfused pure-PyTorch composition and against the conv2d_resample contract, gradients of
first and second order, opcheck, torch.compile, errors, modules, saved-memory bound."""

import importlib
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import fastgan._backend as backend
from fastgan.benchmark.runner import saved_storages
from fastgan.nn import ConvTranspose2dAct, DownConv2d, UpConv2d
from fastgan.ops import (
    ACTIVATIONS,
    downsample_conv2d,
    downsample_conv2d_ref,
    upsample_conv2d,
    upsample_conv2d_ref,
)
from fastgan.ops._fir import parse_filter
from fastgan.ops.fir_bias_act import _fir_filter_ref

from .conftest import requires_ext

ACTS = list(ACTIVATIONS)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
TOL = {torch.float32: 2e-5, torch.float64: 1e-11, torch.float16: 4e-3, torch.bfloat16: 3e-2}
pytestmark = requires_ext()


def rand(*shape, seed=0, dtype=torch.float64, cl=False):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)
    return t.to(memory_format=torch.channels_last) if cl else t


def close(a, b, dtype, scale=1.0):
    tol = TOL[dtype] * scale
    err = (a.double() - b.double()).abs().max().item()
    ref = max(1.0, b.double().abs().max().item())
    assert err <= tol * ref, f"max err {err} > {tol * ref}"


# ------------------------------ contract (independent formulas) -----------------------


def contract_up(x, w, f, up, p):
    """conv2d_resample's generic path: zero-insert upsample, pad, FIR (gain up^2), conv2d."""
    n, c, h, wd = x.shape
    u = x.new_zeros(n, c, h * up, wd * up)
    u[:, :, ::up, ::up] = x
    f = torch.as_tensor(f, dtype=x.dtype)
    f2 = torch.outer(f, f) if f.ndim == 1 else f
    f2 = f2 / f2.sum() * up * up
    fh, fw = f2.shape
    pad = [p + (fw + up - 1) // 2, p + (fw - up) // 2, p + (fh + up - 1) // 2, p + (fh - up) // 2]
    u = F.pad(u, pad)
    u = F.conv2d(u, f2.flip([0, 1])[None, None].repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(u, w)


def contract_down(x, w, f, down, p):
    c = x.shape[1]
    f = torch.as_tensor(f, dtype=x.dtype)
    f2 = torch.outer(f, f) if f.ndim == 1 else f
    f2 = f2 / f2.sum()
    fh, fw = f2.shape
    pad = [p + (fw - down + 1) // 2, p + (fw - down) // 2, p + (fh - down + 1) // 2, p + (fh - down) // 2]
    u = F.conv2d(F.pad(x, pad), f2.flip([0, 1])[None, None].repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(u, w, stride=down)


@pytest.mark.parametrize("k", [1, 3, 4])
@pytest.mark.parametrize("f", [(1, 3, 3, 1), (1, 2, 1), [[1, 2, 1], [2, 5, 2], [1, 2, 3]], (1, 1)])
@pytest.mark.parametrize("fused", [False, True])
def test_up_contract(k, f, fused):
    x, w = rand(2, 3, 5, 7), rand(4, 3, k, k, seed=1)
    want = contract_up(x, w, f, 2, k // 2)
    fn = upsample_conv2d if fused else upsample_conv2d_ref
    got = fn(x, w, None, f, 2, act="linear", gain=1.0)
    assert got.shape == want.shape
    close(got, want, torch.float64)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("f", [(1, 3, 3, 1), (1, 2, 1), [[1, 2], [3, 1]]])
@pytest.mark.parametrize("fused", [False, True])
def test_down_contract(k, f, fused):
    x, w = rand(2, 3, 9, 8), rand(4, 3, k, k, seed=1)
    want = contract_down(x, w, f, 2, k // 2)
    fn = downsample_conv2d if fused else downsample_conv2d_ref
    got = fn(x, w, None, f, 2, act="linear", gain=1.0)
    assert got.shape == want.shape
    close(got, want, torch.float64)


def test_fir_filter_ref_is_true_convolution():
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    x[0, 0, 2, 2] = 1
    f = torch.arange(1.0, 10.0, dtype=torch.float64).view(3, 3)
    y = _fir_filter_ref(x, f, [1, 1, 1, 1])
    torch.testing.assert_close(y[0, 0, 1:4, 1:4], f)  # impulse response = the filter itself


# ------------------------------ fused vs unfused --------------------------------------


def run_both(fn_fused, fn_ref, x, w, b, **kw):
    """Values and gradients w.r.t. x, w, b of fused and reference runs (same dtype)."""
    outs = []
    for fn in (fn_fused, fn_ref):
        xs = x.detach().clone().requires_grad_()
        ws = w.detach().clone().requires_grad_()
        bs = None if b is None else b.detach().clone().requires_grad_()
        y = fn(xs, ws, bs, **kw)
        gy = rand(*y.shape, seed=7, dtype=y.dtype)
        grads = torch.autograd.grad(y, [t for t in (xs, ws, bs) if t is not None], gy)
        outs.append((y, grads))
    return outs


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 0.4])
def test_up_acts(act, clamp):
    x, w, b = rand(2, 5, 6, 7), rand(3, 5, 3, 3, seed=1) * 0.3, rand(3, seed=2)
    (y, g), (yr, gr) = run_both(upsample_conv2d, upsample_conv2d_ref, x, w, b, act=act, clamp=clamp)
    assert y.shape == (2, 3, 12, 14)
    close(y, yr, torch.float64)
    for a, r in zip(g, gr):
        close(a, r, torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("act", ["lrelu", "tanh"])
def test_up_dtypes_layouts(dtype, cl, act):
    x = rand(2, 16, 5, 9, dtype=dtype, cl=cl)
    w = (rand(16, 16, 3, 3, seed=1) * 0.2).to(dtype)
    b = rand(16, seed=2, dtype=dtype)
    (y, g), (yr, gr) = run_both(upsample_conv2d, upsample_conv2d_ref, x, w, b, act=act, clamp=1.5)
    if cl:
        assert y.is_contiguous(memory_format=torch.channels_last)
    else:
        # NCHW in, NCHW out, even when the block runs through channels_last internally.
        assert y.is_contiguous()
    assert y.dtype == dtype
    close(y, yr, dtype, scale=4)
    for a, r in zip(g, gr):
        close(a, r, dtype, scale=20)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cl", [False, True])
def test_up_matches_float64_reference(dtype, cl):
    x = rand(1, 8, 7, 5, dtype=dtype, cl=cl)
    w = (rand(8, 8, 3, 3, seed=1) * 0.2).to(dtype)
    b = rand(8, seed=2, dtype=dtype)
    y = upsample_conv2d(x, w, b)
    want = upsample_conv2d_ref(x.double(), w.double(), b.double())
    close(y, want, dtype, scale=4)


@pytest.mark.parametrize("f", [(1, 3, 3, 1), (2, 1), (1,), (1, 2, 3, 4, 5, 6, 7, 8),
                               [[1, 2, 1], [2, 4, 2], [1, 2, 1]], [[1, 0, 2], [3, 1, 1]]])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("cl", [False, True])
def test_up_filters_kernels(f, k, cl):
    x, w, b = rand(2, 3, 4, 5, cl=cl), rand(2, 3, k, k, seed=1), rand(2, seed=2)
    (y, g), (yr, gr) = run_both(upsample_conv2d, upsample_conv2d_ref, x, w, b, f=f)
    close(y, yr, torch.float64)
    for a, r in zip(g, gr):
        close(a, r, torch.float64)


@pytest.mark.parametrize("up", [1, 2, 3, 4])
@pytest.mark.parametrize("padding", [0, 1, 2, (0, 3)])
@pytest.mark.parametrize("flip", [(True, False), (False, True)])
def test_up_factors_padding_flips(up, padding, flip):
    x, w, b = rand(1, 2, 5, 6), rand(3, 2, 3, 3, seed=1), rand(3, seed=2)
    kw = dict(up=up, padding=padding, flip_weight=flip[0], flip_filter=flip[1], f=(1, 2, 4))
    (y, g), (yr, gr) = run_both(upsample_conv2d, upsample_conv2d_ref, x, w, b, **kw)
    close(y, yr, torch.float64)
    for a, r in zip(g, gr):
        close(a, r, torch.float64)
    if up > 1 and not flip[1] and flip[0]:
        p = padding if isinstance(padding, int) else None
        if p is not None:
            close(upsample_conv2d(x, w, None, (1, 2, 4), up, "linear", gain=1.0, padding=p),
                  contract_up(x, w, (1, 2, 4), up, p), torch.float64)


@pytest.mark.parametrize("act", ["lrelu", "linear", "relu", "swish", "selu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_down(down_path, act, dtype, cl, bias):
    x = rand(2, 6, 9, 10, dtype=dtype, cl=cl)
    w = (rand(4, 6, 3, 3, seed=1) * 0.3).to(dtype)
    b = rand(4, seed=2, dtype=dtype) if bias else None
    (y, g), (yr, gr) = run_both(downsample_conv2d, downsample_conv2d_ref, x, w, b, act=act, clamp=0.8)
    assert y.shape == (2, 4, 4, 5)
    close(y, yr, dtype, scale=4)
    for a, r in zip(g, gr):
        close(a, r, dtype, scale=20)


def test_bias_none_and_empty_batch():
    x, w = rand(0, 3, 4, 4), rand(2, 3, 3, 3)
    assert upsample_conv2d(x, w).shape == (0, 2, 8, 8)
    x = rand(1, 3, 4, 4)
    close(upsample_conv2d(x, w, None, act="relu"), upsample_conv2d_ref(x, w, None, act="relu"), torch.float64)


# ------------------------------ gradcheck / second order ------------------------------


@pytest.mark.parametrize("act,clamp", [("lrelu", None), ("lrelu", 0.5), ("linear", None),
                                       ("linear", 0.7), ("tanh", 0.6), ("swish", None), ("gelu", None)])
@pytest.mark.parametrize("cl", [False, True])
def test_gradcheck_up(act, clamp, cl):
    x = rand(1, 2, 3, 4, cl=cl).requires_grad_()
    w = (rand(2, 2, 3, 3, seed=1) * 0.5).requires_grad_()
    b = rand(2, seed=2).requires_grad_()
    fn = lambda x, w, b: upsample_conv2d(x, w, b, act=act, clamp=clamp)  # noqa: E731
    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("act", ["lrelu", "tanh", "softplus"])
def test_gradcheck_down(down_path, act):
    x = rand(1, 2, 6, 5).requires_grad_()
    w = (rand(3, 2, 3, 3, seed=1) * 0.5).requires_grad_()
    b = rand(3, seed=2).requires_grad_()
    fn = lambda x, w, b: downsample_conv2d(x, w, b, act=act)  # noqa: E731
    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("act,clamp", [("lrelu", None), ("lrelu", 0.9), ("tanh", None), ("gelu", 1.0)])
@pytest.mark.parametrize("cl", [False, True])
def test_second_order_vs_reference(act, clamp, cl):
    """Gradient of a gradient penalty (as R1 / path length do), fused vs unfused."""
    x0, w0, b0 = rand(2, 4, 5, 6, cl=cl), rand(3, 4, 3, 3, seed=1) * 0.4, rand(3, seed=2)
    res = []
    for fn in (upsample_conv2d, upsample_conv2d_ref):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        y = fn(x, w, b, act=act, clamp=clamp)
        (gx,) = torch.autograd.grad((y * rand(*y.shape, seed=5)).sum(), x, create_graph=True)
        pen = gx.square().sum()
        # Piecewise-linear: the penalty does not depend on x (its derivative is zero).
        gs = torch.autograd.grad(pen, (x, w, b), allow_unused=True)
        res.append([torch.zeros_like(t) if g is None else g for g, t in zip(gs, (x, w, b))])
    for a, r in zip(*res):
        close(a, r, torch.float64)


def test_third_order_lrelu():
    x = rand(1, 2, 3, 3).requires_grad_()
    w = (rand(2, 2, 3, 3, seed=1) * 0.5).requires_grad_()
    fn = lambda x, w: upsample_conv2d(x, w, None, act="lrelu", clamp=0.8)  # noqa: E731
    fr = lambda x, w: upsample_conv2d_ref(x, w, None, act="lrelu", clamp=0.8)  # noqa: E731
    out = []
    for f in (fn, fr):
        y = f(x, w)
        (g1,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
        (g2,) = torch.autograd.grad(g1.pow(2).sum(), w, create_graph=True)
        (g3,) = torch.autograd.grad(g2.pow(2).sum(), x)
        out.append(g3)
    # Third-order values reach ~1e6 with heavy cancellation: relative 1e-7 in float64.
    close(out[0], out[1], torch.float64, scale=1e4)


# ------------------------------ opcheck ------------------------------------------------


def _fir_args(f=(1, 3, 3, 1), gain=4.0):
    fir = parse_filter(f, gain, False, "test")
    return fir.taps, fir.fh, fir.fw, fir.separable


@pytest.mark.parametrize("act,clamp", [("lrelu", -1.0), ("relu", 0.5), ("linear", -1.0), ("tanh", 0.5), ("gelu", -1.0)])
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("f", [(1, 3, 3, 1), [[1, 2], [3, 4]]])
def test_opcheck(act, clamp, cl, f):
    taps, fh, fw, sep = _fir_args(f)
    x = rand(2, 3, 7, 6, cl=cl).float().requires_grad_()
    b = rand(3, seed=1).float().requires_grad_()
    pad = [1, 2, 2, 0]
    args = (x, b, taps, fh, fw, sep, pad, act, 0.2, 1.4, clamp)
    torch.library.opcheck(torch.ops.fastgan.fir_bias_act.default, args)
    y, saved = torch.ops.fastgan.fir_bias_act(*args)
    gy = rand(*y.shape, seed=3).float().requires_grad_()
    gz = rand(*y.shape, seed=4).float() if saved.is_floating_point() else None
    gargs = (gy, saved, gz, taps, fh, fw, sep, pad, 7, 6, act, 0.2, 1.4, clamp, True)
    torch.library.opcheck(torch.ops.fastgan.fir_bias_act_grad.default, gargs)


def test_fir_op_adjoint():
    """<fir(x), g> == <x, fir_grad(g)> for linear act: the grad op is the exact adjoint."""
    taps, fh, fw, sep = _fir_args([[1, 2, 0], [3, 1, 5]], 1.0)
    x, pad = rand(2, 3, 6, 7), [2, -1, 0, 3]
    y, saved = torch.ops.fastgan.fir_bias_act(x, None, taps, fh, fw, sep, pad, "linear", 0.0, 1.0, -1.0)
    g = rand(*y.shape, seed=1)
    gx, gb = torch.ops.fastgan.fir_bias_act_grad(g, saved, None, taps, fh, fw, sep, pad, 6, 7, "linear", 0.0, 1.0, -1.0, True)
    torch.testing.assert_close((y * g).sum(), (x * gx).sum())
    torch.testing.assert_close(gb, g.sum((0, 2, 3)))


# ------------------------------ compile, modules, errors ------------------------------


def test_compile_fullgraph():
    torch._dynamo.reset()
    net = nn.Sequential(UpConv2d(4, 6), DownConv2d(6, 3))
    x = rand(2, 4, 6, 6).float().requires_grad_()
    want = net(x)
    (gw,) = torch.autograd.grad(want.sum(), x)
    cnet = torch.compile(net, fullgraph=True, backend="aot_eager")
    got = cnet(x)
    (gg,) = torch.autograd.grad(got.sum(), x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(gg, gw)


def test_modules_shapes_and_init():
    up = UpConv2d(4, 6, kernel_size=3)
    assert up.weight.shape == (6, 4, 3, 3) and up.bias.shape == (6,)
    assert up(torch.randn(1, 4, 5, 5)).shape == (1, 6, 10, 10)
    down = DownConv2d(4, 6, bias=False, act="linear")
    assert down.bias is None
    assert down(torch.randn(1, 4, 8, 8)).shape == (1, 6, 4, 4)
    # Same init distribution as nn.Conv2d.
    bound = 1 / math.sqrt(4 * 9)
    assert up.weight.abs().max() <= bound + 1e-6


@pytest.mark.parametrize("act,stock", [("relu", F.relu), ("tanh", torch.tanh), ("lrelu", lambda t: F.leaky_relu(t, 0.2))])
@pytest.mark.parametrize("cfg", [dict(kernel_size=4, stride=2, padding=1), dict(kernel_size=3, stride=2, padding=1, output_padding=1),
                                 dict(kernel_size=4, stride=1, padding=0, bias=False), dict(kernel_size=3, groups=2, dilation=2)])
def test_conv_transpose2d_act_drop_in(act, stock, cfg):
    torch.manual_seed(0)
    ref = nn.ConvTranspose2d(4, 6, **cfg)
    mod = ConvTranspose2dAct(4, 6, act=act, **cfg)
    assert [n for n, _ in mod.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert mod.state_dict().keys() == ref.state_dict().keys()
    mod.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    y, yr = mod(x), stock(ref(x))
    torch.testing.assert_close(y, yr)
    g, gr = torch.autograd.grad(y.sum(), [x, mod.weight]), torch.autograd.grad(yr.sum(), [x, ref.weight])
    for a, r in zip(g, gr):
        torch.testing.assert_close(a, r)


def test_errors():
    x, w = torch.randn(1, 3, 4, 4), torch.randn(2, 3, 3, 3)
    with pytest.raises(ValueError, match="x must be 4-D"):
        upsample_conv2d(x[0], w)
    with pytest.raises(ValueError, match="weight has 3 input channels but x has 4"):
        upsample_conv2d(torch.randn(1, 4, 4, 4), w)
    with pytest.raises(ValueError, match="bias must have shape"):
        upsample_conv2d(x, w, torch.randn(3))
    with pytest.raises(TypeError, match="weight has dtype"):
        upsample_conv2d(x, w.double())
    with pytest.raises(TypeError, match="x must be float32"):
        upsample_conv2d(x.int(), w)
    with pytest.raises(ValueError, match="unknown act"):
        upsample_conv2d(x, w, act="nope")
    with pytest.raises(ValueError, match="up must be an int >= 1"):
        upsample_conv2d(x, w, up=0)
    with pytest.raises(ValueError, match="down must be an int >= 1"):
        downsample_conv2d(x, w, down=1.5)
    with pytest.raises(ValueError, match="at most 8"):
        upsample_conv2d(x, w, f=[1] * 9)
    with pytest.raises(ValueError, match="sums to zero"):
        upsample_conv2d(x, w, f=(1, -1))
    with pytest.raises(ValueError, match="rectangular"):
        upsample_conv2d(x, w, f=[[1, 2], [1]])
    with pytest.raises(ValueError, match="clamp must be None or >= 0"):
        upsample_conv2d(x, w, clamp=-1)
    with pytest.raises(ValueError, match="padding must be"):
        upsample_conv2d(x, w, padding="same")
    with pytest.raises(ValueError, match="empty output"):
        downsample_conv2d(torch.randn(1, 3, 1, 1), torch.randn(2, 3, 1, 1), padding=-2)
    # The op itself (C++ checks).
    taps, fh, fw, sep = _fir_args()
    with pytest.raises(ValueError, match="fir_bias_act: pad"):
        torch.ops.fastgan.fir_bias_act(x, None, taps, fh, fw, sep, [0, 0, -5, 0], "linear", 0.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="f has 8 taps but fh \\* fw is 16"):
        torch.ops.fastgan.fir_bias_act(x, None, taps, fh, fw, False, [0, 0, 0, 0], "linear", 0.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="filter size must be"):
        torch.ops.fastgan.fir_bias_act(x, None, [1.0] * 18, 9, 9, True, [0, 0, 0, 0], "linear", 0.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="x must be 4-D"):
        torch.ops.fastgan.fir_bias_act(x[0], None, taps, fh, fw, sep, [1, 2, 1, 2], "linear", 0.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="grad has spatial size"):
        torch.ops.fastgan.fir_bias_act_grad(x, torch.empty(0, dtype=torch.uint8), None, taps, fh, fw, sep,
                                            [1, 2, 1, 2], 9, 9, "linear", 0.0, 1.0, -1.0, True)
    with pytest.raises(TypeError, match="saved must have dtype"):
        torch.ops.fastgan.fir_bias_act_grad(x, x, None, taps, fh, fw, sep, [1, 2, 1, 2], 4, 4, "relu", 0.0, 1.0, -1.0, True)


def test_reference_backend_matches():
    x, w, b = rand(1, 3, 4, 5).float(), rand(2, 3, 3, 3, seed=1).float(), rand(2, seed=2).float()
    y = upsample_conv2d(x, w, b)
    with backend.use_reference():
        yr = upsample_conv2d(x, w, b)
    torch.testing.assert_close(y, yr, rtol=1e-5, atol=1e-5)


# ------------------------------ saved memory -------------------------------------------


def saved_bytes(fn):
    y, storages = saved_storages(fn)
    return sum(storages.values()), y


def stock_block(x, w, b, f2d):
    t = F.conv_transpose2d(x, w.transpose(0, 1).flip([2, 3]), stride=2)
    t = F.pad(t, [1, 1, 1, 1])
    c = t.shape[1]
    t = F.conv2d(t, f2d.flip([0, 1])[None, None].repeat(c, 1, 1, 1).to(t.dtype), groups=c)
    return F.leaky_relu(t + b.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


def test_saved_memory_at_most_half_of_stock():
    x = torch.randn(2, 32, 16, 16, requires_grad=True)
    w = torch.randn(32, 32, 3, 3, requires_grad=True)
    b = torch.randn(32, requires_grad=True)
    f = torch.tensor([1.0, 3, 3, 1])
    f2d = torch.outer(f, f) / 64 * 4
    uc = importlib.import_module("fastgan.ops.upsample_conv2d")

    assert uc._cpu_channels_last_conv(x)  # float32 CPU: the channels_last convolution path
    fused, y = saved_bytes(lambda: upsample_conv2d(x, w, b))
    stock, ys = saved_bytes(lambda: stock_block(x, w, b, f2d))
    torch.testing.assert_close(y, ys, rtol=1e-4, atol=1e-4)
    assert fused <= stock / 2, (fused, stock)


# ------------------------------ channels_last convolution path (CPU) -------------------


@pytest.fixture
def cl_conv_all_dtypes(monkeypatch):
    """Run upsample_conv2d's channels_last convolution path for every dtype (on for float32
    only by default), so float64 gradchecks cover it."""
    uc = importlib.import_module("fastgan.ops.upsample_conv2d")

    monkeypatch.setattr(uc, "_CL_CONV_DTYPES", tuple(DTYPES))
    return uc


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (1, 16, 9, 11), (3, 9, 4, 5)])
@pytest.mark.parametrize("act,clamp", [("lrelu", None), ("lrelu", 0.5), ("tanh", None), ("linear", None)])
def test_up_cl_conv_path(cl_conv_all_dtypes, dtype, cl, shape, act, clamp):
    """Channels_last convolution + epilogue writing x's layout: values, layout, gradients."""
    n, c, h, wd = shape
    x0, w0, b0 = rand(*shape, dtype=dtype, cl=cl), rand(7, c, 3, 3, seed=1, dtype=dtype) * 0.3, rand(7, seed=2, dtype=dtype)
    x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
    y = upsample_conv2d(x, w, b, act=act, clamp=clamp)
    assert y.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    xr, wr, br = (t.double().clone().requires_grad_() for t in (x0, w0, b0))
    yr = upsample_conv2d_ref(xr, wr, br, act=act, clamp=clamp)
    close(y, yr, dtype, scale=4)
    gy = rand(*y.shape, seed=3, dtype=dtype)
    gs = torch.autograd.grad(y, (x, w, b), gy)
    grs = torch.autograd.grad(yr, (xr, wr, br), gy.double())
    for g, gr in zip(gs, grs):
        close(g, gr, dtype, scale=40)


@pytest.mark.parametrize("act,clamp", [("lrelu", None), ("lrelu", 0.5), ("swish", None)])
@pytest.mark.parametrize("cl", [False, True])
def test_gradcheck_up_cl_conv(cl_conv_all_dtypes, act, clamp, cl):
    x = rand(1, 2, 3, 4, cl=cl).requires_grad_()
    w = (rand(3, 2, 3, 3, seed=1) * 0.5).requires_grad_()
    b = rand(3, seed=2).requires_grad_()
    fn = lambda x, w, b: upsample_conv2d(x, w, b, act=act, clamp=clamp)  # noqa: E731
    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("cl", [False, True])
def test_second_order_cl_conv(cl_conv_all_dtypes, cl):
    x0, w0, b0 = rand(2, 4, 5, 6, cl=cl), rand(3, 4, 3, 3, seed=1) * 0.4, rand(3, seed=2)
    res = []
    for fn in (upsample_conv2d, upsample_conv2d_ref):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        y = fn(x, w, b, act="gelu", clamp=1.0)
        (gx,) = torch.autograd.grad((y * rand(*y.shape, seed=5)).sum(), x, create_graph=True)
        gs = torch.autograd.grad(gx.square().sum(), (x, w, b), allow_unused=True)
        res.append([torch.zeros_like(t) if g is None else g for g, t in zip(gs, (x, w, b))])
    for a, r in zip(*res):
        close(a, r, torch.float64)


def test_float32_uses_cl_conv_and_keeps_layout():
    uc = importlib.import_module("fastgan.ops.upsample_conv2d")

    x = rand(2, 8, 6, 6, dtype=torch.float32)
    assert uc._cpu_channels_last_conv(x)
    assert not uc._cpu_channels_last_conv(x.double())
    y = upsample_conv2d(x, rand(5, 8, 3, 3, seed=1, dtype=torch.float32), None)
    assert y.is_contiguous()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_cl,out", [(True, "nchw"), (True, "cl"), (False, "cl"), (False, "nchw"), (True, None)])
@pytest.mark.parametrize("act,clamp", [("lrelu", 0.6), ("relu", -1.0), ("linear", -1.0), ("tanh", -1.0)])
@pytest.mark.parametrize("f,pad", [((1, 3, 3, 1), [1, 1, 1, 1]), ([[1, 2, 0], [3, 1, 5]], [2, -1, 0, 3])])
def test_fir_op_out_format(dtype, x_cl, out, act, clamp, f, pad):
    """fir_bias_act's out_format: y and saved in the requested layout, the same values as
    the default; channels_last in, contiguous out is transposed inside the kernel."""
    taps, fh, fw, sep = _fir_args(f)
    fmt = {"nchw": torch.contiguous_format, "cl": torch.channels_last, None: None}[out]
    x = rand(2, 19, 9, 10, dtype=dtype, cl=x_cl)
    b = rand(19, seed=1, dtype=dtype)
    args = (x, b, taps, fh, fw, sep, pad, act, 0.2, 1.4, clamp)
    y0, s0 = torch.ops.fastgan.fir_bias_act(*args)
    y, s = torch.ops.fastgan.fir_bias_act(*args, fmt)
    want = fmt if fmt is not None else (torch.channels_last if x_cl else torch.contiguous_format)
    assert y.is_contiguous(memory_format=want)
    swant = torch.channels_last if (x_cl or want == torch.channels_last) else torch.contiguous_format
    if s.numel():
        assert s.is_contiguous(memory_format=swant)
    # (vector / scalar-tail splits differ between the layouts: smooth acts may differ by an ulp)
    close(y, y0, dtype)
    if s.dtype == torch.uint8:
        assert torch.equal(s, s0)
    else:
        close(s, s0, dtype)
    if dtype in (torch.float32, torch.float64):
        torch.library.opcheck(torch.ops.fastgan.fir_bias_act.default, args + (fmt,))
    # The gradient op, for gy in either layout against saved in its layout: the same gx, gb
    # as the default (x's layout) path, gx in saved's layout.
    gy = rand(*y.shape, seed=5, dtype=dtype)
    gz = rand(*y.shape, seed=6, dtype=dtype) if s.is_floating_point() else None
    gargs = (taps, fh, fw, sep, pad, 9, 10, act, 0.2, 1.4, clamp, True)
    gx0, gb0 = torch.ops.fastgan.fir_bias_act_grad(gy, s0, gz, *gargs)
    for gyl in (gy, gy.contiguous(memory_format=torch.channels_last)):
        gx, gb = torch.ops.fastgan.fir_bias_act_grad(gyl, s, gz, *gargs)
        if s.numel():
            assert gx.is_contiguous(memory_format=swant)
        close(gx, gx0, dtype)
        close(gb, gb0, dtype, scale=10)
        if dtype in (torch.float32, torch.float64):
            torch.library.opcheck(torch.ops.fastgan.fir_bias_act_grad.default, (gyl, s, gz) + gargs)
    with pytest.raises(ValueError, match="out_format"):
        torch.ops.fastgan.fir_bias_act(*args, torch.preserve_format)


# ------------------------------ downsample_conv2d: saved memory and R1 -----------------


@pytest.fixture(params=["composed", "lean"])
def down_path(request, monkeypatch):
    """downsample_conv2d's two paths: composed ops (small maps) and its lean autograd function."""
    if request.param == "lean":
        uc = importlib.import_module("fastgan.ops.upsample_conv2d")
        monkeypatch.setattr(uc, "_LEAN_MIN_PIXELS", 0)
    return request.param


@pytest.fixture
def lean_down_everywhere(monkeypatch):
    """downsample_conv2d's lean autograd function (on maps of 128x128 pixels or more by
    default) for every size, so small float64 cases cover it."""
    uc = importlib.import_module("fastgan.ops.upsample_conv2d")
    monkeypatch.setattr(uc, "_LEAN_MIN_PIXELS", 0)
    return uc


@pytest.mark.parametrize("side,lean", [(128, True), (64, False)])
def test_down_lean_from_128_pixels(side, lean):
    x = torch.randn(1, 2, side, side, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    y = downsample_conv2d(x, w, None, act="lrelu")
    names, todo = set(), [y.grad_fn]
    while todo:
        fn = todo.pop()
        names.add(type(fn).__name__)
        todo += [f for f, _ in fn.next_functions if f is not None]
    assert ("_FirDownConvBackward" in names) is lean, names


def test_down_saves_input_not_filtered_copy(lean_down_everywhere):
    """downsample_conv2d keeps x (which the layer before keeps anyway), the weight and the
    activation's output: not the filtered, padded copy of x the strided convolution reads."""
    x = torch.randn(2, 8, 32, 32, requires_grad=True)
    w = torch.randn(16, 8, 3, 3, requires_grad=True)
    b = torch.randn(16, requires_grad=True)
    y, storages = saved_storages(lambda: downsample_conv2d(x, w, b))
    keep = {x.untyped_storage().data_ptr(), w.untyped_storage().data_ptr()}
    extra = sum(n for (ptr, _), n in storages.items() if ptr not in keep)
    assert extra <= y.numel() * y.element_size(), (extra, storages)
    yr = downsample_conv2d_ref(x, w, b)
    torch.testing.assert_close(y, yr, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act,clamp", [("lrelu", None), ("lrelu", 0.9), ("softplus", None)])
@pytest.mark.parametrize("skip_weights", [False, True])
@pytest.mark.parametrize("cl", [False, True])
def test_down_second_order_vs_reference(lean_down_everywhere, act, clamp, skip_weights, cl):
    """R1 through the block: the input gradient with create_graph (inside
    no_weight_gradients as the losses take it, or not), its square's gradient w.r.t. x, w
    and b, against the unfused composition."""
    from fastgan.ops.conv2d_gradfix import no_weight_gradients

    x0, w0, b0 = rand(2, 4, 9, 10, cl=cl), rand(3, 4, 3, 3, seed=1) * 0.4, rand(3, seed=2)
    res = []
    for fn in (downsample_conv2d, downsample_conv2d_ref):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        y = fn(x, w, b, act=act, clamp=clamp)
        with no_weight_gradients(skip_weights):
            (gx,) = torch.autograd.grad((y * rand(*y.shape, seed=5)).sum(), x, create_graph=True)
        pen = gx.square().sum() + (y * rand(*y.shape, seed=6)).sum()
        gs = torch.autograd.grad(pen, (x, w, b), allow_unused=True)
        res.append([torch.zeros_like(t) if g is None else g for g, t in zip(gs, (x, w, b))])
    for a, r in zip(*res):
        close(a, r, torch.float64)


def test_down_bf16_autocast(lean_down_everywhere):
    """Under CPU autocast the block convolves in bfloat16 like F.conv2d would, and its
    gradients reach the float32 parameters in float32."""
    x0, w0, b0 = rand(2, 4, 12, 12).float(), (rand(6, 4, 3, 3, seed=1) * 0.4).float(), rand(6, seed=2).float()
    res = []
    for fn in (downsample_conv2d, downsample_conv2d_ref):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = fn(x, w, b)
        assert y.dtype == torch.bfloat16
        y.float().square().sum().backward()
        assert w.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
        res.append((y, x.grad, w.grad, b.grad))
    for a, r in zip(*res):
        close(a, r, torch.bfloat16, scale=4)
