"""fastgan.ops.conv2d_gradfix and fastgan.nn.EqualConv2d / EqualLinear: same values and
gradients (first and second order) as the stock ops, and no_weight_gradients() really
skips the weight-gradient computation (counted at the ATen dispatch level)."""

import math
import threading

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck
from torch.utils._python_dispatch import TorchDispatchMode

from fastgan.nn import EqualConv2d, EqualLinear
from fastgan.ops import conv2d, conv_transpose2d, linear, no_weight_gradients, weight_gradients_disabled


class CountBackward(TorchDispatchMode):
    """Records the output_mask of every aten.convolution_backward and the transposed flag of
    every aten.convolution, and counts aten.mm."""

    def __init__(self):
        super().__init__()
        self.conv_masks = []
        self.convs = []
        self.conv_weights = []
        self.mm = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten.convolution_backward.default:
            self.conv_masks.append(tuple(args[10]))
        if func is torch.ops.aten.convolution.default:
            self.convs.append(bool(args[6]))
            self.conv_weights.append(tuple(args[1].shape))
        if func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default):
            self.mm += 1
        return func(*args, **kwargs)


def _conv_case(dtype=torch.float64, transposed=False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 7, 6, generator=g, dtype=dtype, requires_grad=True)
    shape = (4, 3, 3, 3) if transposed else (5, 4, 3, 3)
    w = torch.randn(shape, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(shape[1] if transposed else shape[0], generator=g, dtype=dtype, requires_grad=True)
    return x, w, b


CONVS = {
    "conv2d": (lambda x, w, b: conv2d(x, w, b, stride=2, padding=1),
               lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), False),
    "conv2d_dil": (lambda x, w, b: conv2d(x, w, b, padding=(2, 1), dilation=(2, 1)),
                   lambda x, w, b: F.conv2d(x, w, b, padding=(2, 1), dilation=(2, 1)), False),
    "conv_transpose2d": (lambda x, w, b: conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
                         lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1), True),
}


@pytest.mark.parametrize("name", list(CONVS))
def test_conv_values_and_grads_match_stock(name):
    ours, stock, transposed = CONVS[name]
    x, w, b = _conv_case(transposed=transposed)
    y1, y2 = ours(x, w, b), stock(x, w, b)
    torch.testing.assert_close(y1, y2)
    up = torch.randn_like(y1)
    torch.testing.assert_close(torch.autograd.grad(y1, (x, w, b), up), torch.autograd.grad(y2, (x, w, b), up))


def _r1_like(fn, x, w, b, ctx):
    """gradient penalty through one layer: grad_x with create_graph, then d/d(w, b)."""
    y = torch.tanh(fn(x, w, b))  # non-linear so the second derivative w.r.t. w is not trivial
    with ctx:
        (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    pen = gx.square().sum()
    return pen, torch.autograd.grad(pen, (w, b), allow_unused=True)


@pytest.mark.parametrize("name", list(CONVS))
def test_double_backward_matches_stock_and_skips_weight_grad(name):
    ours, stock, transposed = CONVS[name]
    x, w, b = _conv_case(transposed=transposed)
    ref_pen, ref_grads = _r1_like(stock, x, w, b, torch.enable_grad())
    for skip in (False, True):
        pen, grads = _r1_like(ours, x, w, b, no_weight_gradients(skip))
        torch.testing.assert_close(pen, ref_pen)
        torch.testing.assert_close(grads[0], ref_grads[0])
        # The bias does not influence grad_x through a linear layer... but through tanh it does.
        torch.testing.assert_close(grads[1], ref_grads[1])
        # the first backward alone: the input gradient is the adjoint convolution (transposed
        # for a convolution, plain for a transposed one), never convolution_backward's input
        # part (whose own derivative is the memory-hungry one); weights only when not skipped
        y = torch.tanh(ours(x, w, b)).sum()
        mode = CountBackward()
        with mode, no_weight_gradients(skip):
            torch.autograd.grad(y, x, create_graph=True)
        assert mode.convs == [not transposed]
        assert mode.conv_masks == ([] if skip else [(False, True, True)])


def test_context_counts_in_a_deep_stack():
    torch.manual_seed(0)
    ws = [torch.randn(8, 3 if i == 0 else 8, 3, 3, requires_grad=True) for i in range(4)]
    x = torch.randn(2, 3, 16, 16, requires_grad=True)

    def net(t):
        for w in ws:
            t = F.leaky_relu(conv2d(t, w, padding=1), 0.2)
        return t.sum()

    for skip, want in ((True, 0), (False, 4)):
        mode = CountBackward()
        with mode:
            out = net(x)
            with no_weight_gradients(skip):
                (gx,) = torch.autograd.grad(out, x, create_graph=True)
        assert mode.convs.count(True) == 4  # the input gradients (the first layer's too: x wants one)
        assert sum(m[1] for m in mode.conv_masks) == want
        # the weight gradients of the penalty still arrive in the second backward
        grads = torch.autograd.grad(gx.square().sum(), ws)
        assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_linear_values_grads_and_double_backward():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(linear(x, w, b), F.linear(x, w, b))
    up = torch.randn(3, 2, 4, dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad(linear(x, w, b), (x, w, b), up),
                               torch.autograd.grad(F.linear(x, w, b), (x, w, b), up))
    ref_pen, ref_grads = _r1_like(F.linear, x, w, b, torch.enable_grad())
    for skip in (False, True):
        mode = CountBackward()
        with mode:
            pen, grads = _r1_like(linear, x, w, b, no_weight_gradients(skip))
        torch.testing.assert_close(pen, ref_pen)
        torch.testing.assert_close(grads, ref_grads)
    # count matmuls of the first backward alone
    counts = {}
    for skip in (False, True):
        y = torch.tanh(linear(x, w, b)).sum()
        mode = CountBackward()
        with mode, no_weight_gradients(skip):
            torch.autograd.grad(y, x, create_graph=True)
        counts[skip] = mode.mm
    assert counts == {False: 2, True: 1}, counts


def test_gradcheck_gradgradcheck():
    _, w, b = _conv_case()
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda *a: conv2d(a[0], a[1], a[2], padding=1), (x, w, b))
    assert gradgradcheck(lambda *a: conv2d(a[0], a[1], a[2], padding=1), (x, w, b))
    xt = torch.randn(1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(4, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(lambda a, c: conv_transpose2d(a, c, stride=2), (xt, wt))
    xl = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    wl = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    bl = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(linear, (xl, wl, bl))


def test_context_nests_and_is_exception_safe():
    assert not weight_gradients_disabled()
    with no_weight_gradients():
        with no_weight_gradients():
            assert weight_gradients_disabled()
        assert weight_gradients_disabled()
    assert not weight_gradients_disabled()
    with pytest.raises(RuntimeError):
        with no_weight_gradients():
            raise RuntimeError("boom")
    assert not weight_gradients_disabled()
    with no_weight_gradients(enabled=False):
        assert not weight_gradients_disabled()


def test_context_from_threads():
    seen = []

    def work():
        for _ in range(200):
            with no_weight_gradients():
                seen.append(weight_gradients_disabled())
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not weight_gradients_disabled()
    assert len(seen) == 800 and all(seen)


def test_no_grad_path_uses_stock_op():
    x, w, b = _conv_case()
    with torch.no_grad():
        y = conv2d(x, w, b, padding=1)
    assert y.grad_fn is None
    torch.testing.assert_close(y, F.conv2d(x, w, b, padding=1))


def test_bf16_autocast():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    layer, fc = EqualConv2d(3, 4, 3, padding=1), EqualLinear(4 * 64, 2, activation="lrelu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fc(layer(x).flatten(1))
        assert y.dtype == torch.bfloat16
        with no_weight_gradients():
            (gx,) = torch.autograd.grad(y.float().sum(), x, create_graph=True)
    assert gx.dtype == torch.float32
    gx.square().sum().backward()
    assert layer.weight.grad.dtype == torch.float32 and torch.isfinite(layer.weight.grad).all()
    assert fc.weight.grad is not None and fc.bias.grad is not None


def test_errors():
    with pytest.raises(ValueError, match="input must be 4-D"):
        conv2d(torch.ones(3, 4, 5), torch.ones(2, 3, 1, 1))
    with pytest.raises(ValueError, match="stride"):
        conv2d(torch.ones(1, 3, 4, 5), torch.ones(2, 3, 1, 1), stride=(1, 2, 3))
    with pytest.raises(ValueError, match="weight.shape"):
        linear(torch.ones(2, 3), torch.ones(4, 5))
    with pytest.raises(ValueError, match="bias"):
        linear(torch.ones(2, 5), torch.ones(4, 5), torch.ones(3))


# -- modules ------------------------------------------------------------------------------


@pytest.mark.parametrize("lr_mul", [1.0, 0.01])
def test_equal_conv2d_matches_stock_conv(lr_mul):
    torch.manual_seed(0)
    m = EqualConv2d(3, 5, 3, stride=2, padding=1, bias_init=0.5, lr_multiplier=lr_mul).double()
    assert m.weight.std().item() == pytest.approx(1 / lr_mul, rel=0.3)
    ref = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1).double()
    with torch.no_grad():
        ref.weight.copy_(m.weight * lr_mul / math.sqrt(27))
        ref.bias.copy_(m.bias * lr_mul)
    torch.testing.assert_close(ref.bias, torch.full((5,), 0.5, dtype=torch.float64))
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(m(x), ref(x))
    m(x).square().sum().backward()
    ref(x).square().sum().backward()
    torch.testing.assert_close(m.weight.grad, ref.weight.grad * lr_mul / math.sqrt(27))
    torch.testing.assert_close(m.bias.grad, ref.bias.grad * lr_mul)
    assert set(m.state_dict()) == {"weight", "bias"}
    assert EqualConv2d(3, 5, 1, bias=False).bias is None


@pytest.mark.parametrize("activation", [None, "lrelu", "linear"])
def test_equal_linear_matches_stock(activation):
    torch.manual_seed(0)
    m = EqualLinear(6, 4, bias_init=1.0, lr_multiplier=0.1, activation=activation).double()
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    w = m.weight * 0.1 / math.sqrt(6)
    y = F.linear(x, w, m.bias * 0.1)
    if activation == "lrelu":
        y = F.leaky_relu(y, 0.2) * math.sqrt(2)
    torch.testing.assert_close(m(x), y)
    # the penalty path (double backward) through the module equals stock
    (g1,) = torch.autograd.grad(m(x).tanh().sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(y.tanh().sum(), x, create_graph=True)
    torch.testing.assert_close(g1, g2)
    a = torch.autograd.grad(g1.square().sum(), (m.weight, m.bias))
    b = torch.autograd.grad(g2.square().sum(), (m.weight, m.bias))
    torch.testing.assert_close(a, b)


def test_module_errors():
    with pytest.raises(ValueError, match="kernel_size"):
        EqualConv2d(3, 4, 0)
    with pytest.raises(ValueError, match="lr_multiplier"):
        EqualLinear(3, 4, lr_multiplier=0)
    with pytest.raises(ValueError, match="activation"):
        EqualLinear(3, 4, activation="nope")


@pytest.mark.parametrize("down", [1, 2])
def test_layers_keep_the_penalty_double_backward_lean_on_large_maps(down):
    """EqualConv2d (and conv2d_resample's 1x1 down path in it) on maps of 128x128 pixels or
    more take conv2d()'s function: in R1's second backward no convolution has the gradient
    map as its kernel (what convolution_backward's own derivative runs, gigabytes on CPU at
    1024 px); smaller maps keep F.conv2d. Second-order gradients as the stock layer's."""
    from fastgan import use_layers

    for side, lean in ((128 * down, True), (64 * down, False)):
        torch.manual_seed(0)
        k = 1 if down > 1 else 3
        layer = EqualConv2d(3, 4, k, padding=k // 2, act="linear" if down > 1 else "lrelu",
                            bias=down == 1, down=down).double()
        x0 = torch.randn(1, 3, side, side, dtype=torch.float64)
        res = []
        for kit in ("fastgan", "stock"):
            x = x0.clone().requires_grad_()
            with use_layers(kit):
                y = layer(x)
                with no_weight_gradients():
                    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
                mode = CountBackward()
                with mode:
                    res.append(torch.autograd.grad(gx.square().sum(), list(layer.parameters())))
            if kit == "fastgan":
                kernel_sized = [w for w in mode.conv_weights if w[-1] > k]
                assert (kernel_sized == []) is lean, (side, mode.conv_weights)
        for a, b in zip(*res):
            torch.testing.assert_close(a, b)


# --- scaled_input_conv2d: a modulated convolution's x * style, not saved -----------------

import sys  # noqa: E402

from fastgan.ops.conv2d_gradfix import scaled_input_conv2d  # noqa: E402

_gf = sys.modules["fastgan.ops.conv2d_gradfix"]


@pytest.fixture(params=["composed", "lean"])
def scaled_path(request, monkeypatch):
    """Both paths of scaled_input_conv2d: the composed form (small inputs) and the autograd
    function that does not save the product (forced on every size)."""
    if request.param == "lean":
        monkeypatch.setattr(_gf, "_SCALED_MIN_NUMEL", 0)
    return request.param


def _scaled_case(transposed, cl, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 6, 5, generator=g, dtype=dtype)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    s = torch.rand(3, 4, generator=g, dtype=dtype) + 0.5
    w = torch.randn((4, 5, 3, 3) if transposed else (5, 4, 3, 3), generator=g, dtype=dtype)
    return x.requires_grad_(), s.requires_grad_(), w.requires_grad_()


def _scaled_stock(x, s, w, transposed):
    xs = x * s[:, :, None, None]
    if transposed:
        return F.conv_transpose2d(xs, w, None, 2, 1, 1)
    return F.conv2d(xs, w, None, 1, 1)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("cl", [False, True])
def test_scaled_input_conv_first_and_second_order_match_stock(scaled_path, transposed, cl):
    """Values, the three gradients and gradients of gradients (a path-length penalty
    differentiates G's input-gradient chain) against x * s then the stock convolution."""
    kw = dict(stride=2, padding=1, transposed=True, output_padding=1) if transposed else dict(padding=1)
    outs = []
    for fn in (lambda x, s, w: scaled_input_conv2d(x, s, w, **kw), lambda x, s, w: _scaled_stock(x, s, w, transposed)):
        x, s, w = _scaled_case(transposed, cl)
        y = fn(x, s, w)
        gy = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
        g = torch.autograd.grad((y * gy).sum(), (x, s, w), create_graph=True)
        gg = torch.autograd.grad(sum(t.square().sum() for t in g), (x, s, w))
        outs.append((y,) + g + gg)
    for u, v in zip(*outs):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10)
    x, s, w = _scaled_case(transposed, cl)
    assert gradcheck(lambda x, s, w: scaled_input_conv2d(x, s, w, **kw), (x, s, w))
    assert gradgradcheck(lambda x, s, w: scaled_input_conv2d(x, s, w, **kw), (x, s, w))


def test_scaled_input_conv_does_not_save_the_product(monkeypatch):
    """Above the size threshold the product x * s is not among the tensors saved for
    backward: x, s and w are (and below it, the composed form saves the product too)."""
    from fastgan.benchmark.runner import saved_storages

    x = torch.randn(4, 64, 64, 64, requires_grad=True)  # 2**20 elements: the lean path
    s, w = torch.rand(4, 64, requires_grad=True), torch.randn(64, 64, 3, 3, requires_grad=True)
    _, lean = saved_storages(lambda: scaled_input_conv2d(x, s, w, padding=1))
    ptrs = {t.untyped_storage().data_ptr() for t in (x, s, w)}
    assert {p for p, _ in lean} == ptrs
    monkeypatch.setattr(_gf, "_SCALED_MIN_NUMEL", 1 << 30)
    _, composed = saved_storages(lambda: scaled_input_conv2d(x, s, w, padding=1))
    extra = sum(n for (p, _), n in composed.items() if p not in ptrs)
    assert extra == x.numel() * 4  # the product


def test_scaled_input_conv_skips_weight_gradient_in_context(monkeypatch):
    monkeypatch.setattr(_gf, "_SCALED_MIN_NUMEL", 0)
    x, s, w = _scaled_case(False, False)
    y = scaled_input_conv2d(x, s, w, padding=1)
    with no_weight_gradients(), CountBackward() as c:
        gx, = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    assert c.conv_masks == [(True, False, False)]
    ref, = torch.autograd.grad(_scaled_stock(x, s, w, False).square().sum(), x)
    torch.testing.assert_close(gx, ref)


def test_scaled_input_conv_bf16_autocast(monkeypatch):
    monkeypatch.setattr(_gf, "_SCALED_MIN_NUMEL", 0)
    x, s, w = (t.detach().float().requires_grad_() for t in _scaled_case(False, True))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = scaled_input_conv2d(x, s, w, padding=1)
        ref = _scaled_stock(x, s, w, False)
    assert y.dtype == torch.bfloat16
    exact = _scaled_stock(x.double(), s.double(), w.double(), False)
    err, err_stock = (y.double() - exact).abs().max(), (ref.double() - exact).abs().max()
    assert err <= 2 * err_stock + 1e-2, (err, err_stock)  # bf16 rounding, as the stock composition's
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and s.grad.dtype == torch.float32 and w.grad.dtype == torch.float32


def test_scaled_input_conv_errors():
    x, s, w = _scaled_case(False, False)
    with pytest.raises(ValueError, match="scale must be a tensor of shape"):
        scaled_input_conv2d(x, s[:, :3], w, padding=1)
    with pytest.raises(ValueError, match="scale"):
        scaled_input_conv2d(x, None, w, padding=1)
    from fastgan.ops import conv2d_resample

    with pytest.raises(ValueError, match="input_scale"):
        conv2d_resample(x, w, None, padding=1, input_scale=s[:2])
