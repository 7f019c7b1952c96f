"""fastgan.ops.batch_norm_act (and BatchNormAct) against F.batch_norm + bias_act: values,
running statistics, layouts, dtypes, training and eval, every activation, gradients of
first and second order, opcheck, compile, determinism, errors."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import fastgan._backend as backend
from fastgan import use_layers
from fastgan.nn import BatchNormAct
from fastgan.ops import ACTIVATIONS, batch_norm_act, batch_norm_act_ref, use_reference

from .conftest import REF_ONLY

HAS_OP = not REF_ONLY and backend.extension() is not None and hasattr(torch.ops.fastgan, "batch_norm_act")
requires_op = pytest.mark.skipif(not HAS_OP, reason="FASTGAN_BACKEND=ref: the compiled kernels are not tested")

# (N, C, ...) shapes: NCHW rows of >= 16 elements (row mode), small spatial sizes and
# channels_last (per-column mode), 2-D and 3-D inputs, one channel, odd sizes.
SHAPES = [(4, 3, 5, 7), (8, 32, 14, 14), (16, 64, 7, 7), (3, 5), (2, 6, 3), (5, 1, 4, 4), (2, 3, 33, 17)]
ACTS = list(ACTIVATIONS)


def _x(shape, dtype, layout, seed=0, offset=3.0):
    g = torch.Generator().manual_seed(seed)
    # an offset mean: the statistics must not cancel catastrophically
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + offset
    if layout == "channels_last" and len(shape) == 4:
        x = x.to(memory_format=torch.channels_last)
    elif layout == "strided":
        x = x.transpose(0, -1).contiguous().transpose(0, -1)
    return x.to(dtype)


def _params(c, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(c, generator=g, dtype=torch.float64) * 0.5 + 1).to(dtype)
    b = torch.randn(c, generator=g, dtype=torch.float64).to(dtype)
    # running statistics: float32, as autocast keeps them, or float64 with float64 x
    stat = torch.float64 if dtype == torch.float64 else torch.float32
    rm = torch.randn(c, generator=g, dtype=torch.float64).to(stat)
    rv = (torch.rand(c, generator=g, dtype=torch.float64) + 0.5).to(stat)
    return w, b, rm, rv


def _ref64(x, w, b, rm, rv, training, act, alpha, gain, clamp, eps=1e-5):
    """float64 reference of the output (running statistics copied, not touched)."""
    return batch_norm_act_ref(x.double(), None if rm is None else rm.double(), None if rv is None else rv.double(),
                              None if w is None else w.double(), None if b is None else b.double(), training,
                              0.1, eps, act, alpha, gain, clamp)


TOL = {torch.float64: 1e-9, torch.float32: 2e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}


@requires_op
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("training", [True, False])
def test_forward_matches_reference(shape, layout, dtype, training):
    x = _x(shape, dtype, layout)
    w, b, rm, rv = _params(shape[1], dtype)
    for act in ("relu", "lrelu", "tanh"):
        y = batch_norm_act(x, rm.clone(), rv.clone(), w, b, training, 0.1, 1e-5, act, 0.2, 1.3)
        ref = _ref64(x, w, b, rm, rv, training, act, 0.2, 1.3, None)
        assert y.dtype == x.dtype and y.shape == x.shape
        if x.is_contiguous(memory_format=torch.channels_last) and x.dim() == 4 and not x.is_contiguous():
            assert y.is_contiguous(memory_format=torch.channels_last)
        tol = TOL[dtype] * max(1.0, ref.abs().max().item())
        torch.testing.assert_close(y.double(), ref, rtol=0, atol=tol, msg=f"act={act}")


@requires_op
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_every_activation_and_clamp(act, clamp):
    x = _x((4, 6, 5, 5), torch.float64, "channels_last")
    w, b, rm, rv = _params(6, torch.float64)
    for training in (True, False):
        y = batch_norm_act(x, rm.double(), rv.double(), w, b, training, 0.1, 1e-5, act, 0.2, 1.5, clamp)
        torch.testing.assert_close(y, _ref64(x, w, b, rm, rv, training, act, 0.2, 1.5, clamp), rtol=1e-10, atol=1e-10)


@requires_op
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("momentum", [0.1, 0.9])
def test_running_statistics_like_aten(layout, momentum):
    x = _x((8, 5, 6, 6), torch.float32, layout)
    w, b, rm, rv = _params(5, torch.float32)
    rm1, rv1, rm2, rv2 = rm.clone(), rv.clone(), rm.clone(), rv.clone()
    batch_norm_act(x, rm1, rv1, w, b, True, momentum, 1e-5, "relu")
    F.batch_norm(x, rm2, rv2, w, b, True, momentum, 1e-5)
    torch.testing.assert_close(rm1, rm2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rv1, rv2, rtol=1e-5, atol=1e-6)


@requires_op
def test_module_matches_stock_module_and_state_dict():
    """BatchNormAct (fastgan) vs its stock build: same outputs, gradients, buffers (momentum
    None included) and state-dict keys, over several training steps and in eval."""
    torch.manual_seed(0)
    for momentum in (0.1, None):
        fused = BatchNormAct(6, "lrelu").double()
        stock = BatchNormAct(6, "lrelu").double()  # run under use_layers("stock")
        fused.momentum = stock.momentum = momentum
        with torch.no_grad():
            fused.weight.uniform_(0.5, 1.5)
            fused.bias.uniform_(-1, 1)
        stock.load_state_dict(fused.state_dict())
        assert fused.state_dict().keys() == stock.state_dict().keys()
        for step in range(3):
            x = _x((4, 6, 5, 5), torch.float64, "channels_last", seed=step).requires_grad_(True)
            y1 = fused(x)
            with use_layers("stock"):
                y2 = stock(x)
            torch.testing.assert_close(y1, y2, rtol=1e-10, atol=1e-10)
            gy = torch.randn_like(y1)
            g1 = torch.autograd.grad(y1, (x, fused.weight, fused.bias), gy)
            g2 = torch.autograd.grad(y2, (x, stock.weight, stock.bias), gy)
            for a, c in zip(g1, g2):
                torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-10)
        for k, v in fused.state_dict().items():
            torch.testing.assert_close(v, stock.state_dict()[k], rtol=1e-9, atol=1e-12, msg=k)
        fused.eval()
        stock.eval()
        x = _x((4, 6, 5, 5), torch.float64, "contiguous", seed=9)
        with use_layers("stock"):
            y2 = stock(x)
        torch.testing.assert_close(fused(x), y2, rtol=1e-10, atol=1e-10)


@requires_op
@pytest.mark.parametrize("shape", [(4, 3, 5, 7), (8, 32, 14, 14), (3, 5), (2, 6, 3)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("act,clamp", [("relu", None), ("lrelu", 2.0), ("tanh", None), ("gelu", None)])
def test_backward_matches_reference(shape, layout, training, act, clamp):
    x = _x(shape, torch.float64, layout).requires_grad_(True)
    w, b, rm, rv = _params(shape[1], torch.float64)
    w.requires_grad_(True)
    b.requires_grad_(True)
    y = batch_norm_act(x, rm.double(), rv.double(), w, b, training, 0.1, 1e-5, act, 0.2, 1.3, clamp)
    gy = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, w, b), gy)
    ref = batch_norm_act_ref(x, rm.double(), rv.double(), w, b, training, 0.1, 1e-5, act, 0.2, 1.3, clamp)
    want = torch.autograd.grad(ref, (x, w, b), gy)
    for name, a, c in zip("xwb", got, want):
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-9, msg=f"grad {name}")
    assert got[0].stride() == x.stride()


@requires_op
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_backward_low_precision(dtype, layout):
    x = _x((8, 16, 6, 6), dtype, layout).requires_grad_(True)
    w, b, _, _ = _params(16, torch.float32)
    w.requires_grad_(True)
    b.requires_grad_(True)
    y = batch_norm_act(x, None, None, w, b, True, 0.1, 1e-5, "lrelu")
    gy = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, w, b), gy)
    x64 = x.detach().double().requires_grad_(True)
    w64, b64 = w.detach().double().requires_grad_(True), b.detach().double().requires_grad_(True)
    ref = batch_norm_act_ref(x64, None, None, w64, b64, True, 0.1, 1e-5, "lrelu")
    want = torch.autograd.grad(ref, (x64, w64, b64), gy.double())
    assert got[1].dtype == torch.float32 and got[0].dtype == dtype
    for name, a, c in zip("xwb", got, want):
        # sign flips of the pre-activation near 0 move single elements in bfloat16
        close = torch.isclose(a.double(), c, rtol=0.05, atol=0.05 * c.abs().max().item())
        assert close.float().mean() > 0.99, name


@requires_op
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("act", ["lrelu", "tanh", "linear"])
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck_and_gradgradcheck(training, act, affine):
    x = _x((3, 4, 3, 5), torch.float64, "channels_last").requires_grad_(True)
    w, b, rm, rv = _params(4, torch.float64)
    rm, rv = rm.double(), rv.double()
    args = (x, w.requires_grad_(True), b.requires_grad_(True)) if affine else (x,)

    def f(x, w=None, b=None):
        return batch_norm_act(x, rm.clone(), rv.clone(), w, b, training, 0.1, 1e-5, act, 0.2, 1.2)

    assert gradcheck(f, args)
    assert gradgradcheck(f, args)


@requires_op
def test_r1_through_batch_norm_matches_reference():
    """A gradient penalty through batch norm (create_graph, then the penalty's gradient)."""
    x = _x((6, 5, 4, 4), torch.float64, "channels_last").requires_grad_(True)
    w, b, _, _ = _params(5, torch.float64)
    w.requires_grad_(True)
    b.requires_grad_(True)
    out = {}
    for name, fn in (("fused", batch_norm_act), ("ref", batch_norm_act_ref)):
        y = fn(x, None, None, w, b, True, 0.1, 1e-5, "lrelu", 0.2, 1.0)
        (g,) = torch.autograd.grad((y * y.detach().sin()).sum(), x, create_graph=True)
        # b moves only the lrelu kinks: no gradient reaches it (None from both)
        out[name] = torch.autograd.grad(g.square().sum(), (x, w, b), allow_unused=True)
    assert out["ref"][2] is None or not out["ref"][2].any()
    for a, c in zip(out["fused"][:2], out["ref"][:2]):
        torch.testing.assert_close(a, c, rtol=1e-8, atol=1e-9)


@requires_op
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("training", [True, False])
def test_opcheck(layout, dtype, training):
    x = _x((3, 4, 5, 6), dtype, layout).requires_grad_(True)
    w, b, rm, rv = _params(4, dtype if dtype == torch.float64 else torch.float32)
    torch.library.opcheck(torch.ops.fastgan.batch_norm_act.default,
                          (x, w.requires_grad_(True), b.requires_grad_(True), rm, rv, training, 1e-5, "lrelu",
                           0.2, 1.0, -1.0))
    x0 = x.detach()
    mean, invstd = x0.float().mean((0, 2, 3)), torch.rand(4) + 0.5
    if dtype == torch.float64:
        mean, invstd = mean.double(), invstd.double()
    gy = torch.randn_like(x0)
    torch.library.opcheck(torch.ops.fastgan.batch_norm_act_backward.default,
                          (gy, x0, w.detach(), b.detach(), mean, invstd, training, "lrelu", 0.2, 1.0, -1.0,
                           [True, True, True]))
    torch.library.opcheck(torch.ops.fastgan.batch_norm_act_backward.default,
                          (gy, x0, None, b.detach(), mean, invstd, training, "relu", 0.2, 1.0, -1.0,
                           [True, False, True]))


@requires_op
def test_compile_fullgraph_module():
    torch.manual_seed(0)
    m = BatchNormAct(4, "lrelu")
    ref = BatchNormAct(4, "lrelu")
    ref.load_state_dict(m.state_dict())
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    x = torch.randn(3, 4, 5, 5, requires_grad=True)
    y1, y2 = compiled(x), ref(x)
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(torch.autograd.grad(y1.sum(), x)[0], torch.autograd.grad(y2.sum(), x)[0])
    torch.testing.assert_close(m.running_mean, ref.running_mean)
    torch.testing.assert_close(m.running_var, ref.running_var)
    assert int(m.num_batches_tracked) == int(ref.num_batches_tracked) == 1


@requires_op
def test_deterministic_across_thread_counts():
    x = _x((64, 32, 14, 14), torch.float32, "channels_last").requires_grad_(True)
    w, b, _, _ = _params(32, torch.float32)
    gy = torch.randn_like(x)
    n = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, max(2, n)):
            torch.set_num_threads(threads)
            y = batch_norm_act(x, None, None, w, b, True, 0.1, 1e-5, "relu")
            outs.append((y,) + torch.autograd.grad(y, x, gy))
    finally:
        torch.set_num_threads(n)
    for a, c in zip(*outs):
        assert torch.equal(a, c)


@requires_op
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_statistics_do_not_cancel(layout):
    """|mean| >> std: shifted sums keep the variance (a float32 E[x^2] - E[x]^2 would lose
    it all at mean 100, std 0.1), and the output is no less accurate than ATen's float32."""
    for scale, offset in ((0.1, 100.0), (1e-2, 1e3)):
        x = _x((16, 3, 8, 8), torch.float64, layout).sub(3.0).mul(scale).add(offset).float()
        y = batch_norm_act(x, None, None, None, None, True, 0.1, 1e-5, "linear")
        ref = F.batch_norm(x.double(), None, None, None, None, True, 0.1, 1e-5)
        aten = F.batch_norm(x, None, None, None, None, True, 0.1, 1e-5)
        err, aten_err = (y.double() - ref).abs().max().item(), (aten.double() - ref).abs().max().item()
        assert err <= max(1e-3, 1.5 * aten_err), (scale, offset, err, aten_err)


@requires_op
def test_reference_backend_agrees():
    x = _x((4, 3, 6, 6), torch.float32, "contiguous")
    w, b, rm, rv = _params(3, torch.float32)
    y1 = batch_norm_act(x, rm.clone(), rv.clone(), w, b, True)
    with use_reference():
        y2 = batch_norm_act(x, rm.clone(), rv.clone(), w, b, True)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)


def test_errors():
    x = torch.randn(4, 3, 5, 5)
    with pytest.raises(ValueError, match="act"):
        batch_norm_act(x, None, None, training=True, act="nope")
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm_act(torch.randn(1, 3), None, None, training=True)
    with pytest.raises((ValueError, RuntimeError), match="running_mean"):
        batch_norm_act(x, None, None, training=False)
    with pytest.raises(ValueError, match="clamp"):
        batch_norm_act(x, None, None, training=True, clamp=-1.0)
    if HAS_OP:
        with pytest.raises(ValueError, match="weight must be 1-D"):
            batch_norm_act(x, None, None, torch.ones(4), training=True)
        with pytest.raises(TypeError, match="bias has dtype"):
            batch_norm_act(x, None, None, None, torch.ones(3, dtype=torch.float64), training=True)
        with pytest.raises(ValueError, match="eps"):
            batch_norm_act(x, None, None, training=True, eps=-1.0)
        with pytest.raises(ValueError, match="at least 2 dimensions"):
            batch_norm_act(torch.randn(5), None, None, training=True)
        with pytest.raises(ValueError, match="not differentiable"):
            batch_norm_act(x.requires_grad_(True), torch.zeros(3, requires_grad=True), torch.ones(3), training=False)
        with pytest.raises(NotImplementedError, match="create_graph"):
            torch.ops.fastgan.batch_norm_act_backward(x, x.detach(), None, None, torch.zeros(3), torch.ones(3),
                                                     True, "relu", 0.2, 1.0, -1.0, [True, False, False])


def test_extension_has_op():
    if REF_ONLY or backend.extension() is None:
        pytest.skip("FASTGAN_BACKEND=ref")
    assert HAS_OP
    status = backend.extension().op_status(["fastgan::batch_norm_act", "fastgan::batch_norm_act_backward"])
    for s in status.values():
        assert s["cpu"] and s["autograd"] and s["composite"]


_COMPOSITE = None if not HAS_OP else torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)


@requires_op
@pytest.mark.parametrize("shape", [(4, 3, 5, 7), (16, 8, 3, 3), (3, 5)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("training", [True, False])
def test_composite_path_matches_cpu_kernel(shape, layout, dtype, training):
    """The composite implementation (what CUDA runs: ATen batch norm + bias_act) against the
    fused CPU kernel, called through its dispatch key: values, statistics, gradients,
    layouts and the output-mask contract."""
    x = _x(shape, dtype, layout)
    w, b, rm, rv = _params(shape[1], dtype if dtype == torch.float64 else torch.float32)
    args = (x, w, b, None if training else rm, None if training else rv, training, 1e-5, "lrelu", 0.2, 1.4, 3.0)
    fused = torch.ops.fastgan.batch_norm_act.default(*args)
    comp = torch.ops.fastgan.batch_norm_act.default.redispatch(_COMPOSITE, *args)
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=1e-5, atol=1e-5)
    for a, c in zip(fused, comp):
        assert a.dtype == c.dtype and a.stride() == c.stride()
        torch.testing.assert_close(a, c, **tol)
    gy = torch.randn_like(x)
    _, mean, invstd, _ = fused
    for mask in ([True, True, True], [False, True, False], [True, False, True]):
        bargs = (gy, x, w, b, mean, invstd, training, "lrelu", 0.2, 1.4, 3.0, mask)
        g1 = torch.ops.fastgan.batch_norm_act_backward.default(*bargs)
        g2 = torch.ops.fastgan.batch_norm_act_backward.default.redispatch(_COMPOSITE, *bargs)
        for a, c in zip(g1, g2):
            assert a.shape == c.shape and a.dtype == c.dtype and a.stride() == c.stride()
            torch.testing.assert_close(a, c, **tol)


@requires_op
@pytest.mark.parametrize("channels", [2, 8, 16, 24, 40, 56, 64, 72, 130])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_every_row_width(channels, dtype):
    """channels_last rows of C values: the widths whose per-column sums stay in registers
    (1..8 vectors) and the others; statistics, output and all three gradients."""
    x = _x((6, channels, 5, 3), dtype, "channels_last", seed=channels).requires_grad_(True)
    w, b, _, _ = _params(channels, torch.float32)
    w.requires_grad_(True)
    b.requires_grad_(True)
    y = batch_norm_act(x, None, None, w, b, True, 0.1, 1e-5, "lrelu", 0.2, 1.0)
    gy = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, w, b), gy)
    x64 = x.detach().double().requires_grad_(True)
    w64, b64 = w.detach().double().requires_grad_(True), b.detach().double().requires_grad_(True)
    ref = batch_norm_act_ref(x64, None, None, w64, b64, True, 0.1, 1e-5, "lrelu", 0.2, 1.0)
    want = torch.autograd.grad(ref, (x64, w64, b64), gy.double())
    tol = TOL[dtype]
    torch.testing.assert_close(y.double(), ref, rtol=0, atol=tol * max(1.0, ref.abs().max().item()))
    for name, a, c in zip("xwb", got, want):
        scale = max(1.0, c.abs().max().item())
        if dtype == torch.float32:
            torch.testing.assert_close(a.double(), c, rtol=0, atol=1e-4 * scale, msg=name)
        else:  # single lrelu kinks may flip in bfloat16: nearly all elements close
            close = torch.isclose(a.double(), c, rtol=0, atol=0.05 * scale)
            assert close.float().mean() > 0.99, name
