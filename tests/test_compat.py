"""The compat layers give the same results as fastgan's functions and as each contract's
reference, on random inputs."""

import math

import pytest
import torch
import torch.nn.functional as F

import fastgan.compat.rosinality as op
from fastgan import ops
from fastgan.compat import stylegan2_ada
from fastgan.compat.stylegan2_ada import bias_act, conv2d_resample, upfirdn2d


def test_stylegan2_ada_namespaces():
    # StyleGAN2-ADA code does `from torch_utils.ops import upfirdn2d; upfirdn2d.upfirdn2d(...)`.
    for name in ("setup_filter", "upfirdn2d", "upsample2d", "downsample2d", "filter2d"):
        assert callable(getattr(upfirdn2d, name))
    assert callable(bias_act.bias_act) and "lrelu" in bias_act.activation_funcs
    assert callable(conv2d_resample.conv2d_resample)
    assert stylegan2_ada.upfirdn2d is upfirdn2d


@pytest.mark.parametrize("impl", ["cuda", "ref"])
def test_stylegan2_ada_upfirdn2d(impl):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 9, 7)
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=torch.device("cpu"))
    fs = upfirdn2d.setup_filter([1, 3, 3, 1], separable=True)
    cases = [
        (upfirdn2d.upfirdn2d, ops.upfirdn2d, (x, f), dict(up=2, padding=[2, 1, 2, 1], gain=4)),
        (upfirdn2d.upfirdn2d, ops.upfirdn2d, (x, fs), dict(down=2, padding=1, flip_filter=True)),
        (upfirdn2d.upsample2d, ops.upsample2d, (x, f), dict(up=2)),
        (upfirdn2d.downsample2d, ops.downsample2d, (x, fs), dict(down=2, padding=1)),
        (upfirdn2d.filter2d, ops.filter2d, (x, f), dict(gain=2)),
    ]
    for compat_fn, fg_fn, args, kw in cases:
        y = compat_fn(*args, **kw, impl=impl)
        torch.testing.assert_close(y, fg_fn(*args, **kw), rtol=1e-5, atol=1e-5)
    # Against the contract's reference (zero insertion + pad + conv2d).
    y = upfirdn2d.upfirdn2d(x, f, up=2, down=1, padding=[2, 1, 2, 1], impl=impl)
    torch.testing.assert_close(y, ops.upfirdn2d_ref(x, f, up=2, padding=[2, 1, 2, 1]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(upfirdn2d.setup_filter([1, 2, 1]), ops.setup_filter([1, 2, 1]))


def test_stylegan2_ada_bias_act_and_conv2d_resample():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 6, 6)
    b = torch.randn(4)
    for impl in ("cuda", "ref"):
        y = bias_act.bias_act(x, b, act="lrelu", clamp=2.0, impl=impl)
        torch.testing.assert_close(y, ops.bias_act(x, b, act="lrelu", clamp=2.0))
        ref = (F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2) * math.sqrt(2)).clamp(-2, 2)
        torch.testing.assert_close(y, ref)
    w = torch.randn(3, 4, 3, 3)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    y = conv2d_resample.conv2d_resample(x, w, f, up=2, padding=1)
    torch.testing.assert_close(y, ops.conv2d_resample(x, w, f, up=2, padding=1))
    # Contract: zero insertion + [1,3,3,1] filter (gain 4), then a 3x3 convolution.
    up = ops.upfirdn2d_ref(x, f, up=2, padding=[2 + 1, 1 + 1, 2 + 1, 1 + 1], gain=4)
    torch.testing.assert_close(y, F.conv2d(up, w), rtol=1e-5, atol=1e-5)


def _rosinality_contract(x, kernel, up, down, pad):
    """rosinality's upfirdn2d written out: zero insertion, pad/crop, correlation with the
    flipped kernel (a true convolution), decimation."""
    upx, upy = (up, up) if isinstance(up, int) else up
    downx, downy = (down, down) if isinstance(down, int) else down
    if len(pad) == 2:
        pad = (pad[0], pad[1], pad[0], pad[1])
    px0, px1, py0, py1 = pad
    n, c, h, w = x.shape
    z = x.new_zeros(n, c, h * upy, w * upx)
    z[:, :, ::upy, ::upx] = x
    z = F.pad(z, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    z = z[:, :, max(-py0, 0): z.shape[2] - max(-py1, 0), max(-px0, 0): z.shape[3] - max(-px1, 0)]
    k = torch.flip(kernel, [0, 1]).to(x.dtype)
    out = F.conv2d(z.reshape(n * c, 1, *z.shape[2:]), k[None, None])
    out = out.reshape(n, c, *out.shape[2:])
    return out[:, :, ::downy, ::downx]


def test_rosinality_upfirdn2d():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 8, 7)
    k = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1]))
    k = k / k.sum()
    # Asymmetric kernel: catches a convolution/correlation mix-up.
    ka = torch.randn(3, 4)
    for kernel in (k * 4, ka):
        for up, down, pad in (
            (2, 1, (2, 1)),
            (1, 2, (1, 1)),
            (1, 1, (2, 1)),
            ((2, 1), (1, 2), (1, 2, 0, 1)),
            (1, 1, (-1, 2, 1, 0)),
        ):
            y = op.upfirdn2d(x, kernel, up=up, down=down, pad=pad)
            r = _rosinality_contract(x, kernel, up, down, pad)
            torch.testing.assert_close(y, r, rtol=1e-5, atol=1e-5)
            p4 = pad if len(pad) == 4 else (pad[0], pad[1], pad[0], pad[1])
            upl = [up, up] if isinstance(up, int) else list(up)
            downl = [down, down] if isinstance(down, int) else list(down)
            torch.testing.assert_close(y, ops.upfirdn2d(x, kernel, upl, downl, list(p4)))
    with pytest.raises(ValueError, match="kernel"):
        op.upfirdn2d(x, torch.ones(4))


def test_rosinality_fused_leaky_relu():
    torch.manual_seed(3)
    x = torch.randn(2, 5, 4, 4)
    b = torch.randn(5)
    ref = F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2) * math.sqrt(2)
    torch.testing.assert_close(op.fused_leaky_relu(x, b), ref)
    torch.testing.assert_close(op.fused_leaky_relu(x, b), ops.fused_leaky_relu(x, b))
    m = op.FusedLeakyReLU(5)
    with torch.no_grad():
        m.bias.copy_(b)
    torch.testing.assert_close(m(x), ref)
    assert list(m.state_dict()) == ["bias"]


@pytest.mark.parametrize("compat", ["stylegan2_ada", "rosinality"])
def test_conv2d_gradfix_matches_stock_and_skips_weight_grads(compat):
    import fastgan.compat.rosinality as op
    from fastgan.compat.stylegan2_ada import conv2d_gradfix as sg

    gradfix = sg if compat == "stylegan2_ada" else op.conv2d_gradfix
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 9, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(3, 4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    y = gradfix.conv2d(x, w, b, padding=1)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, w, b, padding=1))
    yt = gradfix.conv_transpose2d(x, wt, stride=2, padding=1, output_padding=1)
    torch.testing.assert_close(yt, torch.nn.functional.conv_transpose2d(x, wt, stride=2, padding=1, output_padding=1))
    # R1-style: input gradient under the context, then its gradient reaches the weight.
    with gradfix.no_weight_gradients():
        (gx,) = torch.autograd.grad(gradfix.conv2d(x, w, b, padding=1).square().sum(), x, create_graph=True)
    (gw,) = torch.autograd.grad(gx.square().sum(), w)
    (gx_ref,) = torch.autograd.grad(torch.nn.functional.conv2d(x, w, b, padding=1).square().sum(), x, create_graph=True)
    (gw_ref,) = torch.autograd.grad(gx_ref.square().sum(), w)
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(gw, gw_ref)
    from fastgan.ops import weight_gradients_disabled

    with gradfix.no_weight_gradients(False):
        assert not weight_gradients_disabled()
    with gradfix.no_weight_gradients():
        assert weight_gradients_disabled()
    assert gradfix.enabled is True
