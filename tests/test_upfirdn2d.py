import math
import random

import pytest
import torch
from torch.testing._internal.optests import opcheck

import fastgan
from fastgan import _backend
from fastgan.ops import (
    downsample2d,
    filter2d,
    setup_filter,
    upfirdn2d,
    upfirdn2d_ref,
    upsample2d,
)

from .conftest import requires_ext

pytestmark = requires_ext()

# Per-dtype tolerances against a float64 reference computed from the same input values.
# float64 allows for the reference scaling its float32 filter by sqrt(gain) in float32.
TOL = {
    torch.float64: dict(rtol=1e-6, atol=1e-6),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}
DTYPES = list(TOL)
LAYOUTS = ["contiguous", "channels_last"]


def _layout(x, layout):
    return x.to(memory_format=torch.channels_last) if layout == "channels_last" else x.contiguous()


def _check(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Kernel against the float64 reference; output layout follows the input."""
    y = upfirdn2d(x, f, up, down, padding, flip_filter, gain)
    ref = upfirdn2d_ref(x.double(), f, up, down, padding, flip_filter, gain)
    assert y.dtype == x.dtype
    assert y.shape == ref.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        assert y.is_contiguous(memory_format=torch.channels_last)
    else:
        assert y.is_contiguous()
    torch.testing.assert_close(y.double(), ref, **TOL[x.dtype])
    return y


def _filters():
    g = torch.Generator().manual_seed(3)
    out = []
    for taps in (1, 2, 3, 4, 5, 6, 8):
        out.append(("sep%d" % taps, torch.rand(taps, generator=g) + 0.1))
    for shape in ((4, 4), (3, 3), (2, 5), (8, 8), (1, 3)):
        out.append(("full%dx%d" % shape, torch.rand(*shape, generator=g) + 0.1))
    return out


FILTERS = _filters()


# ---- the specialized cases: up 2 / down 2 / none, with the helpers' and backward's padding


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name,f", FILTERS, ids=[n for n, _ in FILTERS])
def test_fast_paths_float64(name, f, layout, cpu_kernels):
    torch.manual_seed(0)
    x = _layout(torch.randn(2, 3, 7, 10, dtype=torch.float64), layout)
    fw, fh = f.shape[-1], f.shape[0]
    # Helper paddings (upsample2d / downsample2d / filter2d) and the raw op with zero,
    # positive, negative and asymmetric padding.
    for pad in (0, 1, [2, 1, 0, 3], [-1, 2, 1, -1]):
        for up, down in ((1, 1), (2, 1), (1, 2), (2, 2)):
            if x.shape[3] * up + sum(_p4(pad)[:2]) < fw or x.shape[2] * up + sum(_p4(pad)[2:]) < fh:
                continue
            _check(x, f, up, down, pad)
            _check(x, f, up, down, pad, flip_filter=True, gain=4)
    for fn, kw in ((upsample2d, {}), (downsample2d, {}), (filter2d, {})):
        y = fn(x, f, **kw)
        with _backend.use_reference():
            r = fn(x, f, **kw)
        torch.testing.assert_close(y, r, **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rank1", [True, False])
def test_outer_product_filters(rank1, dtype, cpu_kernels):
    """A 2-D filter that is an outer product runs as two 1-D passes on the CPU (fewer taps
    per output); one that is only nearly so (a perturbation above float32 rounding) must
    still run as a full 2-D filter. Both against the reference, every resampling factor."""
    g = torch.Generator().manual_seed(3)
    fy, fx = torch.rand(4, generator=g) + 0.1, torch.rand(3, generator=g) - 0.3
    f = torch.outer(fy, fx)
    if not rank1:
        f[1, 2] += 1e-4
    x = torch.randn(2, 3, 9, 8, generator=g, dtype=dtype)
    for up, down in ((1, 1), (2, 1), (1, 2), (2, 2), (3, 2)):
        for pad in ([2, 1, 1, 2], [-1, 2, 1, 0]):
            _check(x, f, up, down, pad, gain=3.0)
            _check(x, f, up, down, pad, flip_filter=True)


def _p4(pad):
    if isinstance(pad, int):
        return [pad] * 4
    return list(pad) if len(pad) == 4 else [pad[0], pad[0], pad[1], pad[1]]


def test_helper_shapes():
    x = torch.randn(1, 2, 8, 6)
    f = setup_filter([1, 3, 3, 1])
    assert upsample2d(x, f).shape == (1, 2, 16, 12)
    assert downsample2d(x, f).shape == (1, 2, 4, 3)
    assert filter2d(x, f).shape == (1, 2, 8, 6)
    assert upsample2d(x, f, up=[2, 3]).shape == (1, 2, 24, 12)
    assert filter2d(x, f, padding=1).shape == (1, 2, 10, 8)
    # Upsampling keeps the mean of a constant image (away from the border).
    y = upsample2d(torch.ones(1, 1, 8, 8), f)
    torch.testing.assert_close(y[..., 3:-3, 3:-3], torch.ones_like(y[..., 3:-3, 3:-3]))


def test_setup_filter():
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    torch.testing.assert_close(f.sum(), torch.tensor(1.0))
    torch.testing.assert_close(f, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64)
    assert setup_filter([1, 3, 3, 1], separable=True).shape == (4,)
    assert setup_filter([1] * 8).shape == (8,)  # 8 taps or more stay separable
    assert setup_filter(None).shape == (1, 1)
    g = setup_filter([1, 2], normalize=False, flip_filter=True, gain=4, separable=True)
    torch.testing.assert_close(g, torch.tensor([4.0, 2.0]))  # flipped, sqrt(4) per axis
    g2 = setup_filter([[1, 2], [3, 4]], normalize=False, gain=3)
    torch.testing.assert_close(g2, torch.tensor([[3.0, 6], [9, 12]]))
    with pytest.raises(ValueError, match="f"):
        setup_filter(torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="separable"):
        setup_filter(torch.ones(2, 2), separable=True)


def test_random_general_float64(cpu_kernels):
    rng = random.Random(1)
    torch.manual_seed(1)
    done = 0
    while done < 80:
        up = [rng.randint(1, 4), rng.randint(1, 4)]
        down = [rng.randint(1, 4), rng.randint(1, 4)]
        if rng.random() < 0.5:
            f = torch.randn(rng.randint(1, 9), dtype=torch.float32)
        else:
            f = torch.randn(rng.randint(1, 7), rng.randint(1, 7), dtype=torch.float32)
        h, w = rng.randint(1, 11), rng.randint(1, 11)
        pad = [rng.randint(-3, 5) for _ in range(4)]
        if w * up[0] + pad[0] + pad[1] < f.shape[-1] or h * up[1] + pad[2] + pad[3] < f.shape[0]:
            continue
        x = _layout(torch.randn(2, rng.randint(1, 5), h, w, dtype=torch.float64), rng.choice(LAYOUTS))
        _check(x, f, up, down, pad, flip_filter=rng.random() < 0.5, gain=rng.choice([1, 2.0, 0.5]))
        done += 1


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "up,down,pad,f",
    [
        (2, 1, [2, 1, 2, 1], setup_filter([1, 3, 3, 1], separable=True)),
        (1, 2, [1, 1, 1, 1], setup_filter([1, 3, 3, 1], separable=True)),
        (1, 1, [1, 2, 1, 2], setup_filter([1, 3, 3, 1])),
        (2, 1, [2, 1, 2, 1], setup_filter([1, 3, 3, 1])),
        (1, 2, [1, 1, 1, 1], setup_filter([1, 2, 1])),
        ([3, 2], [1, 3], [0, 2, 1, 1], setup_filter([1, 2, 3, 4, 5], separable=True)),
    ],
    ids=["up2sep", "down2sep", "filter2d", "up2full", "down2full", "general"],
)
def test_dtypes_layouts(up, down, pad, f, dtype, layout, cpu_kernels):
    torch.manual_seed(2)
    x = _layout(torch.randn(3, 19, 9, 13).to(dtype), layout)
    _check(x, f, up, down, pad, gain=2)


def test_wide_channels_last_and_big_planes():
    # More than one row block per image, and many channels (the vector axis).
    torch.manual_seed(4)
    f = setup_filter([1, 3, 3, 1], separable=True)
    x = torch.randn(2, 40, 33, 70).to(memory_format=torch.channels_last)
    _check(x, f, 2, 1, [2, 1, 2, 1], gain=4)
    _check(x, f, 1, 2, [1, 1, 1, 1])
    _check(x.contiguous(), setup_filter([1, 3, 3, 1]), 2, 1, [2, 1, 2, 1], gain=4)


def test_noncontiguous_input_and_empty():
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 6, 9, 9)[:, ::2, 1:, :-1]
    _check(x, f, 2, 1, 1)
    empty = upfirdn2d(torch.randn(0, 3, 5, 5), f, up=2)
    assert empty.shape == (0, 3, 7, 7)
    # An image of zero height padded up to the filter size: zeros.
    z = upfirdn2d(torch.randn(1, 2, 0, 5), f, padding=[0, 0, 2, 2])
    assert z.shape == (1, 2, 1, 2) and torch.all(z == 0)


def test_identity_filter_none():
    x = torch.randn(2, 3, 5, 6)
    torch.testing.assert_close(upfirdn2d(x, None), x)
    y = upfirdn2d(x, None, up=2)
    assert y.shape == (2, 3, 10, 12)
    torch.testing.assert_close(y[:, :, ::2, ::2], x)
    assert torch.all(y[:, :, 1::2] == 0)
    torch.testing.assert_close(upfirdn2d(x, None, down=2), x[:, :, ::2, ::2])


def test_reference_backend_matches():
    torch.manual_seed(5)
    x = torch.randn(2, 3, 8, 8)
    f = setup_filter([1, 3, 3, 1])
    y = upsample2d(x, f)
    with _backend.use_reference():
        r = upsample2d(x, f)
    torch.testing.assert_close(y, r)


# ---- gradients ----------------------------------------------------------------------


GRAD_CASES = [
    (2, 1, [2, 1, 2, 1], [1.0, 3, 3, 1], True),
    (1, 2, [1, 1, 1, 1], [1.0, 3, 3, 1], True),
    (1, 1, [1, 2, 0, 1], [1.0, 2, 1], False),
    ([2, 3], [3, 1], [0, -1, 2, 1], [1.0, 2, 4], False),
    (3, 2, [-1, 3, 1, 0], [1.0, 5, 2, 3, 1], True),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", GRAD_CASES)
def test_gradcheck_gradgradcheck(case, layout):
    up, down, pad, taps, sep = case
    f = setup_filter(taps, separable=sep)
    torch.manual_seed(6)
    x = _layout(torch.randn(2, 3, 6, 7, dtype=torch.float64), layout).requires_grad_()

    def fn(x):
        return upfirdn2d(x, f, up, down, pad, flip_filter=False, gain=2)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_backward_matches_reference(layout):
    torch.manual_seed(7)
    f = setup_filter([1, 3, 3, 1])
    for up, down, pad in ((2, 1, [2, 1, 2, 1]), (1, 2, [1, 1, 1, 1]), ([1, 2], [3, 1], [1, 0, 0, 2])):
        x = _layout(torch.randn(2, 5, 9, 8), layout)
        xa = x.clone().requires_grad_()
        xb = x.clone().requires_grad_()
        ya = upfirdn2d(xa, f, up, down, pad, gain=3)
        yb = upfirdn2d_ref(xb, f, up, down, pad, gain=3)
        gy = torch.randn_like(ya)
        ya.backward(gy)
        yb.backward(gy)
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-5)
        # Second order through the op itself: d/dx <grad(y, x), v>.
        xc = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(upfirdn2d(xc, f, up, down, pad).square().sum(), xc, create_graph=True)
        (gg,) = torch.autograd.grad(g.sum(), xc)
        xd = x.clone().requires_grad_()
        (gr,) = torch.autograd.grad(upfirdn2d_ref(xd, f, up, down, pad).square().sum(), xd, create_graph=True)
        (ggr,) = torch.autograd.grad(gr.sum(), xd)
        torch.testing.assert_close(gg, ggr, rtol=1e-4, atol=1e-4)


def test_filter_gradient_refused():
    x = torch.randn(1, 1, 4, 4)
    f = torch.ones(2, requires_grad=True)
    with pytest.raises(NotImplementedError, match="filter f"):
        upfirdn2d(x, f)
    upfirdn2d(x, f.detach())
    with torch.no_grad():
        upfirdn2d(x, f)


# ---- registration, compile ----------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("sep", [True, False])
def test_opcheck(sep, layout):
    f = setup_filter([1, 3, 3, 1], separable=sep)
    x = _layout(torch.randn(2, 3, 5, 6, dtype=torch.float64), layout).requires_grad_()
    for args in ((2, 2, 1, 1, 2, 1, 2, 1, False, 4.0), (1, 1, 2, 2, 1, 1, 0, 1, True, 1.0)):
        opcheck(torch.ops.fastgan.upfirdn2d.default, (x, f, *args))


class _Blurry(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = fastgan.nn.Upsample()
        self.down = fastgan.nn.Downsample()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.down(self.conv(self.up(x)).relu())


def test_compile_fullgraph():
    torch.manual_seed(8)
    m = _Blurry()
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    eager = m(x)
    (ge,) = torch.autograd.grad(eager.sum(), x)
    compiled = torch.compile(m, fullgraph=True)
    out = compiled(x)
    (gc,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gc, ge, rtol=1e-5, atol=1e-5)


def test_modules():
    x = torch.randn(2, 3, 8, 8)
    for cls, shape in ((fastgan.nn.Upsample, (2, 3, 16, 16)), (fastgan.nn.Downsample, (2, 3, 4, 4)), (fastgan.nn.Blur, (2, 3, 8, 8))):
        m = cls()
        assert m(x).shape == shape
        assert "filter" not in m.state_dict()  # non-persistent buffer
        assert any(n == "filter" for n, _ in m.named_buffers())
        assert m.double()(x.double()).dtype == torch.float64
    b = fastgan.nn.Blur([1, 2, 1], padding=1)
    assert b(x).shape == (2, 3, 10, 10)


# ---- errors ------------------------------------------------------------------------


def test_errors():
    x = torch.randn(1, 2, 6, 6)
    f = setup_filter([1, 3, 3, 1])
    with pytest.raises(ValueError, match="x must be 4-D"):
        upfirdn2d(x[0], f)
    with pytest.raises(TypeError, match="x must be float"):
        upfirdn2d(x.long(), f)
    with pytest.raises(ValueError, match="f must be 1-D"):
        upfirdn2d(x, torch.ones(2, 2, 2))
    with pytest.raises(TypeError, match="f must be float32"):
        upfirdn2d(x, f.double())
    with pytest.raises(ValueError, match="up must be >= 1"):
        upfirdn2d(x, f, up=0)
    with pytest.raises(ValueError, match="down must be >= 1"):
        upfirdn2d(x, f, down=[1, -2])
    with pytest.raises(ValueError, match="crops everything"):
        upfirdn2d(x, f, padding=-2)
    with pytest.raises(ValueError, match="padding"):
        upfirdn2d(x, f, padding=[1, 2, 3])
    with pytest.raises(TypeError, match="f must be a tensor"):
        upfirdn2d(x, [1, 2])
    with pytest.raises(ValueError, match="gain"):
        upfirdn2d(x, f, gain=math.inf)
    # The registered op checks too (called directly, without the Python wrapper).
    op = torch.ops.fastgan.upfirdn2d
    with pytest.raises(ValueError, match="x must be 4-D"):
        op(x[0], f, 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(TypeError, match="f must be float32"):
        op(x, f.double(), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(ValueError, match="up must be >= 1"):
        op(x, f, 0, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(ValueError, match="crops everything"):
        op(x, f, 1, 1, 1, 1, -2, -2, 0, 0, False, 1.0)
