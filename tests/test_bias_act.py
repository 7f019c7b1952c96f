"""bias_act: kernels against the pure-PyTorch reference, gradients of first and second
order, opcheck, torch.compile, fallbacks and argument errors."""

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import fastgan
import fastgan._backend as backend
from fastgan.nn import BiasAct, FusedLeakyReLU
from fastgan.ops import ACTIVATIONS, bias_act, bias_act_ref, fused_leaky_relu

from .conftest import requires_ext

ACTS = list(ACTIVATIONS)
SMOOTH = [a for a in ACTS if a not in ("linear", "relu", "lrelu")]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# Tolerances relative to max(1, |reference|): half types store a rounded result.
TOL = {torch.float32: 2e-6, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def make_input(layout, dtype, seed=0):
    """(x, dim) for a named layout; x is random normal scaled to reach every branch."""
    g = torch.Generator().manual_seed(seed)
    if layout == "nchw":
        x, dim = torch.randn(3, 24, 9, 17, generator=g), 1
    elif layout == "channels_last":
        x, dim = torch.randn(3, 24, 9, 17, generator=g).to(memory_format=torch.channels_last), 1
    elif layout == "odd":
        x, dim = torch.randn(3, 5, 7, 9, generator=g), 1
    elif layout == "dim2":
        x, dim = torch.randn(2, 3, 11, 5, generator=g), 2
    elif layout == "dim_last":
        x, dim = torch.randn(4, 6, 33, generator=g), -1
    elif layout == "2d":
        x, dim = torch.randn(19, 70, generator=g), 1
    elif layout == "strided":  # non-dense: every other column of a wider tensor
        x, dim = torch.randn(2, 8, 6, 22, generator=g)[..., ::2], 1
    elif layout == "transposed":  # dense but neither contiguous nor channels_last
        x, dim = torch.randn(4, 7, 5, 6, generator=g).transpose(0, 2), 1
    elif layout == "5d_cl":
        x, dim = torch.randn(2, 6, 3, 4, 5, generator=g).to(memory_format=torch.channels_last_3d), 1
    else:
        raise ValueError(layout)
    return (x * 2).to(dtype), dim


LAYOUTS = ["nchw", "channels_last", "odd", "dim2", "dim_last", "2d", "strided", "transposed", "5d_cl"]


def reference(x, b, dim, act, **kw):
    return bias_act_ref(x.double(), None if b is None else b.double(), dim, act, **kw)


def assert_close(actual, expected, dtype):
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    err = (actual.double() - expected.double()).abs().max().item() if expected.numel() else 0.0
    assert err <= TOL[dtype] * scale, f"max error {err} > {TOL[dtype] * scale}"


# ----------------------------------------------------------------------------- forward


@requires_ext()
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_forward_matches_reference(cpu_kernels, act, dtype, layout):
    x, dim = make_input(layout, dtype)
    b = torch.randn(x.shape[dim]).to(dtype)
    for clamp in (None, 0.7):
        y = bias_act(x, b, dim, act, clamp=clamp)
        assert y.shape == x.shape and y.dtype == dtype
        assert_close(y, reference(x, b, dim, act, clamp=clamp), dtype)
    # without bias, with explicit alpha and gain
    y = bias_act(x, None, dim, act, alpha=0.3, gain=-1.5)
    assert_close(y, reference(x, None, dim, act, alpha=0.3, gain=-1.5), dtype)


@requires_ext()
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "transposed", "5d_cl"])
def test_output_keeps_layout(layout):
    x, dim = make_input(layout, torch.float32)
    y = bias_act(x, torch.randn(x.shape[dim]), dim, "lrelu")
    assert y.stride() == x.stride()


@requires_ext()
def test_kernel_copies_agree():
    """The baseline-ISA and AVX2 copies of the CPU kernels give the same results."""
    ext = backend.extension()
    x, dim = make_input("channels_last", torch.float32, seed=3)
    b = torch.randn(x.shape[dim])
    outs = []
    for which in ("default", "avx2"):
        ext._set_cpu_kernels(which)
        outs.append(bias_act(x, b, dim, "gelu", clamp=1.0))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-6, atol=1e-6)


@requires_ext()
@pytest.mark.parametrize("shape,dim", [((0, 4, 3, 3), 1), ((2, 0, 3, 3), 1), ((2, 4, 0, 3), 1), ((0,), 0)])
def test_empty_tensors(shape, dim):
    x = torch.randn(shape, requires_grad=True)
    b = torch.randn(shape[dim], requires_grad=True)
    y = bias_act(x, b, dim, "tanh", clamp=1.0)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(b.grad, torch.zeros_like(b))


@requires_ext()
@pytest.mark.parametrize("act", ACTS)
def test_nan_propagates(act):
    x = torch.tensor([[float("nan"), 1.0, -1.0, float("nan")]]).reshape(1, 4, 1, 1)
    y = bias_act(x, torch.zeros(4), 1, act, clamp=2.0)
    r = bias_act_ref(x, torch.zeros(4), 1, act, clamp=2.0)
    assert torch.equal(torch.isnan(y), torch.isnan(r)) and torch.isnan(y).sum() == 2


@requires_ext()
def test_scalar_and_large_values():
    x = torch.tensor([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4]).reshape(1, 7)
    for act in ACTS:
        y = bias_act(x, None, 1, act)
        assert_close(y, reference(x, None, 1, act), torch.float32)
        assert torch.isfinite(y).all(), act


# ----------------------------------------------------------------------------- gradients


@requires_ext()
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 0.8])
@pytest.mark.parametrize("gain", [None, -0.7])
@pytest.mark.parametrize("layout", ["odd", "channels_last"])
def test_gradcheck_and_gradgradcheck(cpu_kernels, act, clamp, gain, layout):
    x, dim = make_input(layout, torch.float64, seed=1)
    x = x[:2, :4, :3, :3].detach().clone()
    b = torch.randn(x.shape[dim], dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    # Finite differences must not straddle a kink: keep x + b away from 0 (relu, lrelu,
    # selu, elu ...) and the activation's output away from the clamp.
    bshape = [1] * x.dim()
    bshape[dim] = -1
    for _ in range(4):
        z = x + b.view(bshape)
        y = bias_act_ref(x, b, dim, act, alpha=0.25, gain=gain)
        near = (z.abs() < 1e-2) | (((y.abs() - clamp).abs() < 1e-2) if clamp is not None else False)
        if not near.any():
            break
        x = torch.where(near, x + 0.05, x)
    assert not near.any()
    x.requires_grad_(True)
    b.requires_grad_(True)
    torch.manual_seed(0)  # gradcheck's fast mode draws random projections

    def f(x, b):
        return bias_act(x, b, dim, act, alpha=0.25, gain=gain, clamp=clamp)

    # fast_mode checks random projections of the Jacobians: the same guarantees in practice
    # at a fraction of the cost; test_gradcheck_full runs the slow exhaustive mode.
    assert gradcheck(f, (x, b), fast_mode=True)
    assert gradgradcheck(f, (x, b), fast_mode=True)


@requires_ext()
@pytest.mark.parametrize("act", ACTS)
def test_gradcheck_full(act):
    x = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    f = lambda x, b: bias_act(x, b, 1, act, clamp=1.2)  # noqa: E731
    assert gradcheck(f, (x, b))
    assert gradgradcheck(f, (x, b))


@requires_ext()
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_first_and_second_order_match_reference(act, dtype):
    """R1-style: grad of ||dy/dx||^2 w.r.t. the bias, against the stock composition."""
    x0, dim = make_input("channels_last", dtype, seed=2)
    g = torch.Generator().manual_seed(3)
    b0 = torch.randn(x0.shape[dim], generator=g).to(dtype)
    w = torch.randn(x0.shape, generator=g).to(dtype)
    results = []
    # the reference runs in float64 on the same (rounded) values: a bf16/fp16 reference
    # rounds every intermediate and is less accurate than the kernel (float32 inside)
    ref_dtype = torch.float64 if dtype in (torch.bfloat16, torch.float16) else dtype
    for fn, dt in ((bias_act, dtype), (bias_act_ref, ref_dtype)):
        x = x0.to(dt).requires_grad_()
        b = b0.to(dt).requires_grad_()
        w = w.to(dt)
        # bf16 rounds y onto the clamp value, where the two disagree by convention (see
        # the module docstring); clamp gradients are covered in float32/float64.
        y = fn(x, b, dim, act, clamp=1.5 if dtype == torch.float32 else None)
        (gx,) = torch.autograd.grad((y * w).sum(), x, create_graph=True)
        gb = torch.autograd.grad((y * w).sum(), b, retain_graph=True)[0]
        penalty = gx.float().square().sum()
        if ACTIVATIONS[act].piecewise_linear:
            # the penalty does not depend on x or b through a piecewise-linear act
            results.append((y, gx, gb, None))
            continue
        (gpb,) = torch.autograd.grad(penalty, b)
        results.append((y, gx, gb, gpb))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=5e-2, atol=5e-2)
    for a, r in zip(results[0], results[1]):
        if a is None:
            continue
        scale = max(1.0, r.abs().max().item())
        torch.testing.assert_close(a.float() / scale, r.float() / scale, **tol)


@requires_ext()
def test_second_order_through_linear_act_is_zero():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    y = bias_act(x, b, act="lrelu")
    (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (gb,) = torch.autograd.grad(gx.square().sum(), b, allow_unused=True, materialize_grads=True)
    assert torch.equal(gb, torch.zeros_like(gb))


@requires_ext()
def test_third_order_smooth_raises_clearly():
    x = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    y = bias_act(x, None, 1, "tanh")
    (g1,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(g1.sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="third-order"):
        torch.autograd.grad(g2.sum(), x)


@requires_ext()
@pytest.mark.parametrize(
    "act,gain,alpha,expected",
    [
        ("lrelu", None, None, ["y"]),  # piecewise linear: the output alone
        ("tanh", None, None, ["y"]),
        ("gelu", None, None, ["x", "b"]),  # not monotonic: needs the input
        ("lrelu", -1.0, None, ["x", "b"]),  # negative gain: sign of y says nothing
        ("linear", None, None, []),  # constant derivative
    ],
)
def test_saves_only_what_backward_needs(act, gain, alpha, expected):
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = bias_act(x, b, 1, act, alpha=alpha, gain=gain)
    kinds = []
    for t in saved:
        if t.data_ptr() == y.data_ptr():
            kinds.append("y")
        elif t.data_ptr() == x.data_ptr():
            kinds.append("x")
        elif t.data_ptr() == b.data_ptr():
            kinds.append("b")
        else:
            kinds.append("other")
    assert kinds == expected


# ----------------------------------------------------------------------------- opcheck / compile


def _opcheck_cases():
    cases = []
    for act in ("lrelu", "gelu", "tanh"):
        for cl in (False, True):
            x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
            if cl:
                x = x.to(memory_format=torch.channels_last)
            cases.append((act, cl, x))
    return cases


@requires_ext()
@pytest.mark.parametrize("act,cl,x", _opcheck_cases(), ids=lambda v: str(v) if not isinstance(v, torch.Tensor) else "x")
def test_opcheck(act, cl, x):
    b = torch.randn(x.shape[1], dtype=x.dtype)
    x = x.requires_grad_()
    b = b.requires_grad_()
    torch.library.opcheck(torch.ops.fastgan.bias_act.default, (x, b, 1, act, 0.2, 1.4, -1.0))
    torch.library.opcheck(torch.ops.fastgan.bias_act.default, (x, None, 1, act, 0.2, 1.4, 0.5))
    g = torch.randn_like(x)
    ref_is_y = act != "gelu"
    ref = torch.ops.fastgan.bias_act(x, b, 1, act, 0.2, 1.4, 0.5).detach() if ref_is_y else x
    bb = None if ref_is_y else b
    for order in (1, 2):
        # the order-2 op's own derivative w.r.t. ref would be third order: not implemented
        r = ref if order == 1 else ref.detach()
        rb = bb if (order == 1 or bb is None) else bb.detach()
        torch.library.opcheck(
            torch.ops.fastgan.bias_act_grad.default,
            (g.requires_grad_(), r, rb, 1, act, 0.2, 1.4, 0.5, ref_is_y, order, True),
        )


@requires_ext()
def test_torch_compile_fullgraph():
    torch._dynamo.reset()

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 8, 3, padding=1, bias=False)
            self.act = FusedLeakyReLU(8)

        def forward(self, x):
            return self.act(self.conv(x))

    torch.manual_seed(0)
    m = Block()
    with torch.no_grad():
        m.act.bias.normal_()
    x = torch.randn(2, 4, 8, 8)
    compiled = torch.compile(m, fullgraph=True)
    out = compiled(x)
    ref = m(x)
    torch.testing.assert_close(out, ref)
    out.square().sum().backward()
    g_compiled = m.act.bias.grad.clone()
    m.zero_grad()
    ref.square().sum().backward()
    torch.testing.assert_close(g_compiled, m.act.bias.grad, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- fallbacks


def test_forced_reference_matches_kernel():
    x, dim = make_input("nchw", torch.float32)
    b = torch.randn(x.shape[dim])
    y_kernel = bias_act(x, b, dim, "selu", clamp=1.0)
    with fastgan.ops.use_reference():
        assert fastgan.ops.get_backend() == "ref"
        y_ref = bias_act(x, b, dim, "selu", clamp=1.0)
    assert fastgan.ops.get_backend() != "ref"
    torch.testing.assert_close(y_kernel, y_ref)
    fastgan.ops.set_backend("ref")
    torch.testing.assert_close(bias_act(x, b, dim, "selu", clamp=1.0), y_ref)
    with pytest.raises(ValueError, match="backend must be one of"):
        fastgan.ops.set_backend("fast")


def test_meta_device_runs_reference():
    """A device without a compiled kernel (here: meta) runs the reference for that call."""
    x = torch.empty(2, 3, 4, device="meta")
    y = bias_act(x, torch.empty(3, device="meta"), 1, "lrelu")
    assert y.device.type == "meta" and y.shape == x.shape


def _run_python(code, **env):
    full_env = {**os.environ, "FASTGAN_BACKEND": "auto", **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env, timeout=300
    )


def test_env_forces_reference():
    proc = _run_python(
        """
        import warnings, torch, fastgan
        from fastgan.ops import bias_act, backend_info
        assert backend_info()["backend"] == "ref", backend_info()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y = bias_act(torch.randn(2, 3), torch.randn(3), act="gelu")
        print("OK")
        """,
        FASTGAN_BACKEND="ref",
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr


def test_missing_extension_falls_back_with_one_warning():
    proc = _run_python(
        """
        import sys, warnings
        sys.modules["fastgan._C"] = None  # makes `from fastgan import _C` raise ImportError
        import torch
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import fastgan
            from fastgan.ops import bias_act, bias_act_ref, backend_info
            x, b = torch.randn(2, 3, 4, 4), torch.randn(3)
            y1 = bias_act(x, b, act="lrelu")
            y2 = bias_act(x, b, act="tanh", clamp=0.5)
        msgs = [str(w.message) for w in caught if w.category.__name__ == "FastganFallbackWarning"]
        assert len(msgs) == 1, msgs
        assert "fastgan._C" in msgs[0] or "import" in msgs[0].lower(), msgs[0]
        info = backend_info()
        assert info["extension_loaded"] is False and info["extension_error"], info
        assert torch.equal(y1, bias_act_ref(x, b, act="lrelu"))
        print("OK")
        """
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr


def test_backend_ext_requires_extension():
    proc = _run_python(
        """
        import sys
        sys.modules["fastgan._C"] = None
        try:
            import fastgan
        except ImportError as e:
            print("RAISED", e)
        """,
        FASTGAN_BACKEND="ext",
    )
    assert "RAISED" in proc.stdout and "FASTGAN_BACKEND=ext" in proc.stdout, proc.stdout + proc.stderr


def test_backend_info_keys():
    info = fastgan.backend_info()
    for key in ("extension_loaded", "extension_error", "cpu_kernels", "cuda_kernels", "cuda_archs",
                "torch_version", "torch_cuda_version"):
        assert key in info
    if info["extension_loaded"]:
        assert info["cpu_kernels"] and info["extension_error"] is None


@pytest.mark.skipif(os.environ.get("FASTGAN_BACKEND") != "ext", reason="only when the build is required")
def test_extension_is_loaded_when_required():
    assert fastgan.backend_info()["extension_loaded"]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(act="leaky"), ValueError, "unknown act 'leaky'"),
        (dict(b=torch.randn(5)), ValueError, "b has 5 elements but x.shape\\[1\\] is 3"),
        (dict(b=torch.randn(3, 1)), ValueError, "b must be 1-D"),
        (dict(b=torch.randn(3, dtype=torch.float64)), TypeError, "b has dtype"),
        (dict(b=torch.randn(3, device="meta")), ValueError, "b is on meta"),
        (dict(b=torch.randn(3), dim=4), IndexError, "dim=4 is out of range"),
        (dict(clamp=-1.0), ValueError, "clamp must be None or >= 0"),
        (dict(gain=float("inf")), ValueError, "gain must be finite"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    x = torch.randn(2, 3, 4)
    args = dict(b=None, dim=1, act="lrelu")
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        bias_act(x, **args)


def test_integer_input_rejected():
    with pytest.raises(TypeError, match="x must be float32"):
        bias_act(torch.ones(2, 3, dtype=torch.int64))


@requires_ext()
def test_op_level_errors_name_the_argument():
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="unknown act 'bogus'"):
        torch.ops.fastgan.bias_act(x, None, 1, "bogus", 0.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="b has 2 elements"):
        torch.ops.fastgan.bias_act(x, torch.randn(2), 1, "relu", 0.0, 1.0, -1.0)
    with pytest.raises(IndexError, match="dim=3 is out of range"):
        torch.ops.fastgan.bias_act(x, torch.randn(3), 3, "relu", 0.0, 1.0, -1.0)
    with pytest.raises(TypeError, match="x must be float32"):
        torch.ops.fastgan.bias_act(x.int(), None, 1, "relu", 0.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="grad has shape"):
        torch.ops.fastgan.bias_act_grad(torch.randn(2, 3), x, None, 1, "relu", 0.0, 1.0, -1.0, True, 1, False)
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        torch.ops.fastgan.bias_act_grad(x, x, None, 1, "relu", 0.0, 1.0, -1.0, True, 3, False)
    with pytest.raises(ValueError, match="needs the input x"):
        torch.ops.fastgan.bias_act_grad(x, x, None, 1, "gelu", 0.0, 1.0, -1.0, True, 1, False)


# ----------------------------------------------------------------------------- modules


def test_fused_leaky_relu_matches_rosinality_formula():
    x = torch.randn(4, 6, 5, 5)
    b = torch.randn(6)
    expected = F.leaky_relu(x + b.view(1, -1, 1, 1), 0.1) * 1.7
    torch.testing.assert_close(fused_leaky_relu(x, b, 0.1, 1.7), expected)
    m = FusedLeakyReLU(6)
    assert list(m.state_dict()) == ["bias"] and torch.equal(m.bias, torch.zeros(6))
    with torch.no_grad():
        m.bias.copy_(b)
    torch.testing.assert_close(m(x), F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2) * math.sqrt(2))
    # (N, C) inputs, as after a linear layer
    x2 = torch.randn(8, 6)
    torch.testing.assert_close(m(x2), F.leaky_relu(x2 + b, 0.2) * math.sqrt(2))
    assert FusedLeakyReLU(6, bias=False).bias is None


def test_bias_act_module():
    m = BiasAct(5, act="swish", clamp=2.0, bias_init=0.1)
    x = torch.randn(3, 5, 4)
    torch.testing.assert_close(m(x), bias_act_ref(x, m.bias.detach(), 1, "swish", clamp=2.0))
    assert "swish" in repr(m)
    with pytest.raises(ValueError, match="unknown act"):
        BiasAct(5, act="nope")
    # bf16 input with a float32 parameter (mixed precision)
    y = m(x.bfloat16())
    assert y.dtype == torch.bfloat16


@requires_ext()
def test_tanh_float32_accuracy_over_the_whole_range(cpu_kernels):
    """The vector tanh (Taylor series below |z| = 0.35, exp form above) stays within a few
    float32 ulp of float64 tanh across the branch point, tiny and huge inputs; inf maps to
    +-1 exactly and NaN stays NaN. Forward and backward (1 - y^2)."""
    z = torch.cat([
        torch.linspace(-20, 20, 100001), torch.linspace(-0.5, 0.5, 100001),
        torch.tensor([0.35, -0.35, 0.34999, 0.35001, 1e-30, -1e-30, 1e-8, 60.0, -60.0]),
    ]).view(1, -1)
    y = bias_act(z, None, 1, "tanh")
    ref = torch.tanh(z.double())
    torch.testing.assert_close(y.double(), ref, rtol=4 * 2.0**-24, atol=1e-30)
    special = torch.tensor([[float("inf"), -float("inf"), float("nan")]])
    out = bias_act(special, None, 1, "tanh")
    assert out[0, 0] == 1.0 and out[0, 1] == -1.0 and torch.isnan(out[0, 2])
    zg = z[:, ::7].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(bias_act(zg, None, 1, "tanh").sum(), zg)
    torch.testing.assert_close(g.double(), 1 - torch.tanh(zg.detach().double()) ** 2, rtol=1e-5, atol=3e-7)


@requires_ext()
@pytest.mark.parametrize("channels", [1, 3, 8, 16, 24, 40, 48, 56, 64, 72])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("act,gain", [("lrelu", 1.4), ("gelu", 1.0), ("relu", -1.0)])
def test_channels_last_bias_gradient_every_row_width(cpu_kernels, channels, dtype, act, gain):
    """channels_last rows of C values: widths that take the kernels' register-held column
    sums (1..8 vectors) and the ones that do not, each against the float64 reference."""
    g = torch.Generator().manual_seed(channels)
    x = (torch.randn(9, channels, 7, 5, generator=g) * 2).to(dtype).to(memory_format=torch.channels_last)
    b = torch.randn(channels, generator=g).to(dtype)
    gy = torch.randn(x.shape, generator=g).to(dtype).to(memory_format=torch.channels_last)
    xr, br = x.detach().requires_grad_(True), b.detach().requires_grad_(True)
    dx, db = torch.autograd.grad(bias_act(xr, br, 1, act, gain=gain), (xr, br), gy)
    x64, b64 = x.double().requires_grad_(True), b.double().requires_grad_(True)
    rx, rb = torch.autograd.grad(reference(x64, b64, 1, act, gain=gain), (x64, b64), gy.double())
    assert_close(dx, rx, dtype)
    # the bias gradient sums 315 terms per channel
    scale = max(1.0, rb.abs().max().item())
    assert (db.double() - rb).abs().max().item() <= TOL[dtype] * scale * (20 if dtype == torch.bfloat16 else 5)
