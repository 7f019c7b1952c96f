r"""Fused bias + activation + gain + clamp.

.. math::  y = \operatorname{clamp}(\,\mathrm{gain}\cdot f(x + b, \alpha),\; -c,\; c)

with ``b`` broadcast along ``dim``. This is the StyleGAN2-ADA ``bias_act`` contract, plus
exact GELU. One pass over memory forward, one pass backward (which also reduces the bias
gradient), instead of three or four for the stock composition.

Gradients
---------
First and second order w.r.t. ``x`` and ``b``, clamp included. Forward saves only what the
backward needs:

* relu, lrelu (with ``gain >= 0`` and ``alpha >= 0``), tanh, sigmoid, elu, selu, softplus:
  the output ``y`` (their derivative is a function of ``y``);
* swish, gelu, and relu/lrelu with negative gain or slope: ``x`` and ``b``;
* linear without clamp: nothing.

The backward is the op ``fastgan::bias_act_grad``: ``grad * d^k y / d ref^k`` for order
``k`` and ``ref`` = x or y, plus its sum over every dim but ``dim`` (the bias gradient),
in one pass. Double backward calls the same op again (with ``order=2`` for smooth
activations; piecewise-linear activations have no second-order term). Third-order
gradients are supported for piecewise-linear activations only.

Clamped elements (``|y| >= clamp``) get zero gradient; elements exactly at the clamp
value are treated as clamped (stock ``torch.clamp`` passes the gradient there).
NaN inputs give NaN outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from .. import _backend

__all__ = ["bias_act", "bias_act_ref", "fused_leaky_relu", "ACTIVATIONS"]


@dataclass(frozen=True)
class _ActSpec:
    def_alpha: float
    def_gain: float
    piecewise_linear: bool
    # Derivative recoverable from y (monotonic): saves y instead of x for backward.
    from_output: bool


_SQRT2 = math.sqrt(2.0)
ACTIVATIONS: dict[str, _ActSpec] = {
    "linear": _ActSpec(0.0, 1.0, True, True),
    "relu": _ActSpec(0.0, _SQRT2, True, True),
    "lrelu": _ActSpec(0.2, _SQRT2, True, True),
    "tanh": _ActSpec(0.0, 1.0, False, True),
    "sigmoid": _ActSpec(0.0, 1.0, False, True),
    "elu": _ActSpec(0.0, 1.0, False, True),
    "selu": _ActSpec(0.0, 1.0, False, True),
    "softplus": _ActSpec(0.0, 1.0, False, True),
    "swish": _ActSpec(0.0, _SQRT2, False, False),
    "gelu": _ActSpec(0.0, 1.0, False, False),
}
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _act_fn(act: str, x: torch.Tensor, alpha: float) -> torch.Tensor:
    if act == "linear":
        return x
    if act == "relu":
        return F.relu(x)
    if act == "lrelu":
        return F.leaky_relu(x, alpha)
    if act == "tanh":
        return torch.tanh(x)
    if act == "sigmoid":
        return torch.sigmoid(x)
    if act == "elu":
        return F.elu(x)
    if act == "selu":
        return F.selu(x)
    if act == "softplus":
        return F.softplus(x)
    if act == "swish":
        return torch.sigmoid(x) * x
    return F.gelu(x)  # exact (erf) form


def _check_args(x, b, dim, act, alpha, gain, clamp):
    """Validates the public arguments; returns (dim, alpha, gain, clamp) normalized."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"bias_act: x must be a tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"bias_act: x must be float32, float64, float16 or bfloat16, got {x.dtype}"
        )
    spec = ACTIVATIONS.get(act)
    if spec is None:
        raise ValueError(
            f"bias_act: unknown act {act!r}; expected one of {', '.join(ACTIVATIONS)}"
        )
    if b is not None:
        if not isinstance(b, torch.Tensor):
            raise TypeError(f"bias_act: b must be a tensor or None, got {type(b).__name__}")
        if not -x.ndim <= dim < x.ndim:
            raise IndexError(
                f"bias_act: dim={dim} is out of range for x with {x.ndim} dimensions"
            )
        dim = dim % x.ndim
        if b.ndim != 1:
            raise ValueError(f"bias_act: b must be 1-D, got shape {tuple(b.shape)}")
        if b.shape[0] != x.shape[dim]:
            raise ValueError(
                f"bias_act: b has {b.shape[0]} elements but x.shape[{dim}] is {x.shape[dim]}"
            )
        if b.dtype != x.dtype:
            raise TypeError(f"bias_act: b has dtype {b.dtype} but x has dtype {x.dtype}")
        if b.device != x.device:
            raise ValueError(f"bias_act: b is on {b.device} but x is on {x.device}")
    elif x.ndim > 0:
        dim = dim % x.ndim if -x.ndim <= dim < x.ndim else 0
    else:
        dim = 0
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    if not math.isfinite(alpha):
        raise ValueError(f"bias_act: alpha must be finite, got {alpha}")
    if not math.isfinite(gain):
        raise ValueError(f"bias_act: gain must be finite, got {gain}")
    if clamp is None:
        clamp = -1.0
    else:
        clamp = float(clamp)
        if not clamp >= 0:
            raise ValueError(f"bias_act: clamp must be None or >= 0, got {clamp}")
    return dim, alpha, gain, clamp


def bias_act_ref(
    x: torch.Tensor,
    b: Optional[torch.Tensor] = None,
    dim: int = 1,
    act: str = "linear",
    alpha: Optional[float] = None,
    gain: Optional[float] = None,
    clamp: Optional[float] = None,
) -> torch.Tensor:
    """The pure-PyTorch reference of :func:`bias_act` (same arguments and result)."""
    dim, alpha, gain, clamp = _check_args(x, b, dim, act, alpha, gain, clamp)
    return _ref(x, b, dim, act, alpha, gain, clamp)


def _ref(x, b, dim, act, alpha, gain, clamp):
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = _act_fn(act, x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def bias_act(
    x: torch.Tensor,
    b: Optional[torch.Tensor] = None,
    dim: int = 1,
    act: str = "linear",
    alpha: Optional[float] = None,
    gain: Optional[float] = None,
    clamp: Optional[float] = None,
) -> torch.Tensor:
    """Fused ``clamp(act(x + b, alpha) * gain, -clamp, clamp)``.

    Args:
        x: input, float32/float64/float16/bfloat16, any shape and layout.
        b: optional 1-D bias of length ``x.shape[dim]``, same dtype and device as ``x``.
        dim: the dimension of ``x`` that ``b`` runs along (default 1, channels).
        act: linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish or gelu.
        alpha: slope of lrelu for negative inputs (default 0.2; ignored by other acts).
        gain: output scale (default sqrt(2) for relu, lrelu and swish; 1 otherwise).
        clamp: clamp the output to [-clamp, clamp] (default None: no clamping).

    Runs the compiled CPU/CUDA kernel when available, else :func:`bias_act_ref`.
    The result has the layout of ``x`` (channels_last stays channels_last).
    """
    dim, alpha, gain, clamp = _check_args(x, b, dim, act, alpha, gain, clamp)
    if _backend.use_kernel(x):
        return torch.ops.fastgan.bias_act(x, b, dim, act, alpha, gain, clamp)
    return _ref(x, b, dim, act, alpha, gain, clamp)


def fused_leaky_relu(
    input: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    negative_slope: float = 0.2,
    scale: float = 2**0.5,
) -> torch.Tensor:
    """Drop-in for rosinality's ``fused_leaky_relu``: ``leaky_relu(input + bias) * scale``
    with ``bias`` along dim 1."""
    return bias_act(input, bias, dim=1, act="lrelu", alpha=negative_slope, gain=scale)


# --------------------------------------------------------------------------------------
# Registration of fake kernels and autograd (only when the extension is loaded).
# --------------------------------------------------------------------------------------


def _saves_output(act: str, alpha: float, gain: float) -> bool:
    spec = ACTIVATIONS[act]
    if not spec.from_output:
        return False
    if act in ("relu", "lrelu"):
        # y > 0 <=> x + b > 0 needs a non-negative gain (and slope).
        return gain >= 0 and (act == "relu" or alpha >= 0)
    return True


def _bias_act_fake(x, b, dim, act, alpha, gain, clamp):
    return torch.empty_like(x)


def _bias_act_grad_fake(grad, ref, b, dim, act, alpha, gain, clamp, ref_is_y, order, reduce):
    out = torch.empty_like(ref)
    sums = ref.new_empty((ref.shape[dim],) if reduce else (0,))
    return out, sums


def _bias_act_setup_context(ctx, inputs, output):
    x, b, dim, act, alpha, gain, clamp = inputs
    ctx.params = (dim, act, alpha, gain, clamp)
    ctx.has_b = b is not None
    if act == "linear" and clamp < 0:
        ctx.mode = "none"  # the derivative is the constant gain
        ctx.save_for_backward()
    elif _saves_output(act, alpha, gain):
        ctx.mode = "y"
        ctx.save_for_backward(output)
    else:
        ctx.mode = "x"
        ctx.save_for_backward(x, b)


def _bias_act_backward(ctx, gy):
    dim, act, alpha, gain, clamp = ctx.params
    need_x, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1] and ctx.has_b
    if not (need_x or need_b):
        return None, None, None, None, None, None, None
    if ctx.mode == "x":
        ref, b = ctx.saved_tensors
        ref_is_y = False
    elif ctx.mode == "y":
        (ref,) = ctx.saved_tensors
        b, ref_is_y = None, True
    else:
        # Linear without clamp: with ref = grad and ref_is_y, the kernel's factor is
        # d/dy(y) * gain = gain, and it still reduces the bias gradient in the same pass.
        ref, b, ref_is_y = gy, None, True
    dx, db = torch.ops.fastgan.bias_act_grad(
        gy, ref, b, dim, act, alpha, gain, clamp, ref_is_y, 1, need_b
    )
    return (dx if need_x else None), (db if need_b else None), None, None, None, None, None


def _bias_act_grad_setup_context(ctx, inputs, output):
    grad, ref, b, dim, act, alpha, gain, clamp, ref_is_y, order, reduce = inputs
    ctx.params = (dim, act, alpha, gain, clamp, ref_is_y, order, reduce)
    ctx.shape = ref.shape
    ctx.has_b = b is not None
    smooth = not ACTIVATIONS[act].piecewise_linear
    # grad is needed only for the derivative w.r.t. ref, which is zero when piecewise linear.
    ctx.save_for_backward(grad if smooth else None, ref, b)


def _bias_act_grad_backward(ctx, h_out, h_sums):
    dim, act, alpha, gain, clamp, ref_is_y, order, reduce = ctx.params
    grad, ref, b = ctx.saved_tensors
    # out_sum = sum(out) over every dim but `dim`, so its gradient spreads back evenly.
    h = h_out
    if reduce and h_sums is not None:
        shape = [-1 if i == dim else 1 for i in range(len(ctx.shape))]
        spread = h_sums.reshape(shape)
        h = spread.expand(ctx.shape) if h is None else h + spread
    if h is None:
        return (None,) * 11
    need_grad = ctx.needs_input_grad[0]
    need_ref = ctx.needs_input_grad[1]
    need_b = ctx.needs_input_grad[2] and ctx.has_b
    d_grad = d_ref = d_b = None
    if need_grad:
        d_grad, _ = torch.ops.fastgan.bias_act_grad(
            h, ref, b, dim, act, alpha, gain, clamp, ref_is_y, order, False
        )
    if (need_ref or need_b) and not ACTIVATIONS[act].piecewise_linear:
        if order >= 2:
            raise NotImplementedError(
                f"bias_act: third-order gradients are not implemented for act={act!r} "
                "(only for the piecewise-linear linear, relu and lrelu)"
            )
        d_ref, d_b = torch.ops.fastgan.bias_act_grad(
            h * grad, ref, b, dim, act, alpha, gain, clamp, ref_is_y, 2, need_b
        )
    return (
        d_grad,
        d_ref if need_ref else None,
        d_b if need_b else None,
        None, None, None, None, None, None, None, None,
    )


def _register() -> None:
    lib = "fastgan::"
    torch.library.register_fake(lib + "bias_act")(_bias_act_fake)
    torch.library.register_fake(lib + "bias_act_grad")(_bias_act_grad_fake)
    torch.library.register_autograd(
        lib + "bias_act", _bias_act_backward, setup_context=_bias_act_setup_context
    )
    torch.library.register_autograd(
        lib + "bias_act_grad",
        _bias_act_grad_backward,
        setup_context=_bias_act_grad_setup_context,
    )


if _backend.extension() is not None:
    _register()
