"""fastgan.ops.grad_penalty / grad_sqnorm against their references: values, layouts,
dtypes, gradients of first and second order, opcheck, compile, edge cases, errors."""

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import fastgan._backend as backend
from fastgan.ops import grad_penalty, grad_penalty_ref, grad_sqnorm, grad_sqnorm_ref, use_reference
from fastgan.ops import grad_penalty as gp_mod  # noqa: F401

from .conftest import requires_ext

HAS_OP = backend.extension() is not None and hasattr(torch.ops.fastgan, "grad_sqnorm")
requires_op = pytest.mark.skipif(not HAS_OP, reason="fastgan._C without grad_sqnorm")

SHAPES = [(4, 3, 8, 8), (1, 5), (3,), (2, 3, 17, 19), (3, 5, 80, 81), (7, 16, 4, 4)]
TOL = {
    torch.float64: dict(rtol=1e-12, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=1e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=1e-3, atol=1e-3),
}


def _make(shape, dtype, layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if layout == "channels_last" and len(shape) == 4:
        x = x.to(memory_format=torch.channels_last)
    elif layout == "strided" and len(shape) >= 2:
        x = x.transpose(0, -1).contiguous().transpose(0, -1)  # batch dim innermost in memory
    return x.to(dtype)


@requires_op
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_sqnorm_matches_reference(shape, dtype, layout):
    x = _make(shape, dtype, layout)
    out = torch.ops.fastgan.grad_sqnorm(x)
    ref = x.double().reshape(shape[0], -1).square().sum(1)
    assert out.shape == (shape[0],)
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    torch.testing.assert_close(out.double(), ref, **TOL[dtype])
    torch.testing.assert_close(out, grad_sqnorm_ref(x), **TOL[dtype])


@pytest.mark.parametrize("center", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_penalty_matches_reference(center, reduction, dtype):
    x = _make((5, 3, 9, 7), dtype, "contiguous", seed=1).requires_grad_(True)
    out = grad_penalty(x, center, reduction)
    ref = grad_penalty_ref(x, center, reduction)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    up = torch.rand_like(ref)
    (g1,) = torch.autograd.grad(out, x, up)
    (g2,) = torch.autograd.grad(ref, x, up)
    torch.testing.assert_close(g1, g2, **TOL[dtype])


@pytest.mark.parametrize("center", [0.0, 1.0])
def test_penalty_half_inputs_accumulate_in_float32(center):
    x = _make((4, 3, 40, 40), torch.float32, "contiguous")
    for dt in (torch.float16, torch.bfloat16):
        xh = x.to(dt).requires_grad_(True)
        out = grad_penalty(xh, center)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, grad_penalty_ref(xh.detach().float(), center), rtol=1e-4, atol=1e-4)
        out.backward()
        assert xh.grad.dtype == dt and torch.isfinite(xh.grad).all()


@pytest.mark.parametrize("center", [0.0, 1.0, 0.3])
def test_gradcheck_and_gradgradcheck(center):
    x = torch.randn(3, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    for reduction in ("mean", "none"):
        fn = lambda t: grad_penalty(t, center, reduction)  # noqa: E731
        assert gradcheck(fn, (x,))
        assert gradgradcheck(fn, (x,))


@requires_op
def test_gradcheck_channels_last_big_sample():
    # more than one chunk per sample (16384 elements) and channels_last storage
    x = torch.randn(2, 3, 80, 80, dtype=torch.float64).to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    fn = lambda t: grad_penalty(t, 1.0, "sum")  # noqa: E731
    assert gradcheck(fn, (x,), fast_mode=True)
    assert gradgradcheck(fn, (x,), fast_mode=True)


@requires_op
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (2, 7)])
def test_opcheck(dtype, shape):
    x = torch.randn(shape, dtype=dtype, requires_grad=dtype != torch.bfloat16)
    torch.library.opcheck(torch.ops.fastgan.grad_sqnorm, (x,))


@requires_op
@pytest.mark.parametrize("center,reduction", [(0.0, "mean"), (1.0, "sum"), (0.5, "none")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_penalty_op(center, reduction, dtype):
    """fastgan::grad_penalty (composite forward, one C++ autograd node)."""
    x = torch.randn(3, 4, 5, 6, dtype=dtype, requires_grad=True)
    torch.library.opcheck(torch.ops.fastgan.grad_penalty.default, (x, center, reduction))
    x0 = x.detach().clone()
    x0[1] = 0  # a zero norm: value center^2, gradient 0
    x0.requires_grad_(True)
    torch.library.opcheck(torch.ops.fastgan.grad_penalty.default, (x0, center, reduction))


@requires_op
def test_penalty_op_gradients_float64():
    """The op's single autograd node against the composition of stock ops, to the second
    order (the norms are recomputed through grad_sqnorm under create_graph)."""
    for center in (0.0, 1.0, 0.3):
        for reduction in ("mean", "sum", "none"):
            x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
            fn = lambda t: torch.ops.fastgan.grad_penalty(t, center, reduction)
            torch.autograd.gradcheck(fn, (x,))
            torch.autograd.gradgradcheck(fn, (x,))


@requires_op
def test_opcheck_channels_last():
    x = torch.randn(3, 4, 5, 6).to(memory_format=torch.channels_last).requires_grad_(True)
    torch.library.opcheck(torch.ops.fastgan.grad_sqnorm, (x,))


@requires_op
def test_deterministic_across_thread_counts():
    x = torch.randn(4, 64, 32, 32)  # 4 chunks per sample
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = torch.ops.fastgan.grad_sqnorm(x)
        torch.set_num_threads(max(2, n))
        b = torch.ops.fastgan.grad_sqnorm(x)
        c = torch.ops.fastgan.grad_sqnorm(x)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(a, b) and torch.equal(b, c)


def test_compile_fullgraph():
    x = torch.randn(4, 3, 8, 8, requires_grad=True)

    def f(t):
        return grad_penalty(t * 2, 1.0) + grad_penalty(t, 0.0, "sum")

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    torch.testing.assert_close(out, f(x))
    (g1,) = torch.autograd.grad(out, x)
    (g2,) = torch.autograd.grad(f(x), x)
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("center", [0.0, 1.0])
def test_zero_gradient_no_nan(center):
    x = torch.zeros(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    out = grad_penalty(x, center, "none")
    torch.testing.assert_close(out, torch.full((3,), center**2, dtype=torch.float64))
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))  # defined as 0 at a zero norm
    # one zero sample among non-zero ones: the others are unaffected
    y = torch.randn(3, 5, dtype=torch.float64)
    y[1] = 0
    y.requires_grad_(True)
    grad_penalty(y, center).backward()
    assert torch.isfinite(y.grad).all() and torch.equal(y.grad[1], torch.zeros(5, dtype=torch.float64))
    yr = y.detach()[[0, 2]].clone().requires_grad_(True)
    grad_penalty_ref(yr, center, "sum").backward()
    torch.testing.assert_close(y.grad[[0, 2]] * 3, yr.grad)


@pytest.mark.parametrize("center", [0.0, 1.0])
def test_nan_in_nan_out(center):
    x = torch.randn(3, 2, 4, 4)
    x[1, 0, 2, 2] = float("nan")
    x.requires_grad_(True)
    out = grad_penalty(x, center, "none")
    assert torch.isnan(out[1]) and torch.isfinite(out[[0, 2]]).all()
    out.sum().backward()
    assert torch.isnan(x.grad[1]).any() and torch.isfinite(x.grad[[0, 2]]).all()
    assert torch.isnan(grad_penalty(x, center))  # the mean is NaN too
    xi = torch.randn(2, 3)
    xi[0, 0] = float("inf")
    assert torch.isinf(grad_penalty(xi, center, "none")[0])


def test_reference_backend_agrees():
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    a = grad_penalty(x, 1.0)
    with use_reference():
        b = grad_penalty(x, 1.0)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(grad_sqnorm(x), grad_sqnorm_ref(x))


def test_empty_and_degenerate():
    assert grad_penalty(torch.zeros(0, 3), 0.0, "none").shape == (0,)
    torch.testing.assert_close(grad_penalty(torch.zeros(4, 0), 1.0, "none"), torch.ones(4))
    torch.testing.assert_close(grad_penalty(torch.tensor([3.0, -4.0]), 1.0, "none"), torch.tensor([4.0, 9.0]))


def test_errors():
    with pytest.raises(ValueError, match="batch dimension"):
        grad_penalty(torch.tensor(1.0))
    with pytest.raises(TypeError, match="grads must be float"):
        grad_penalty(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="grads must be a tensor"):
        grad_penalty([1.0, 2.0])
    with pytest.raises(ValueError, match="reduction"):
        grad_penalty(torch.ones(2, 3), reduction="max")
    with pytest.raises(ValueError, match="center must be finite"):
        grad_penalty(torch.ones(2, 3), center=float("nan"))
    with pytest.raises(TypeError, match="center"):
        grad_penalty(torch.ones(2, 3), center="one")


@requires_op
def test_op_errors_from_cpp():
    with pytest.raises(ValueError, match="batch dimension"):
        torch.ops.fastgan.grad_sqnorm(torch.tensor(1.0))
    with pytest.raises(TypeError, match="grads must be float"):
        torch.ops.fastgan.grad_sqnorm(torch.ones(2, 3, dtype=torch.int32))


@requires_ext()
def test_extension_has_op():
    assert HAS_OP
