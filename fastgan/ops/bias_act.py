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
from ._common import FLOAT_DTYPES

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
_NUMBERS = (float, int)
# act -> (default alpha, default gain), for the fast path of bias_act.
_DEFAULTS = {name: (spec.def_alpha, spec.def_gain) for name, spec in ACTIVATIONS.items()}


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
    if x.dtype not in FLOAT_DTYPES:
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
    spec = _DEFAULTS.get(act)
    if (spec is not None and type(dim) is int and _backend.use_kernel(x) and _HAS_OP
            and (clamp is None or (type(clamp) in _NUMBERS and clamp >= 0))):
        # The fast path: constant work in Python; every check of the tensors and numbers
        # runs in C++ (errors name the argument), and so does autograd.
        return _OP(x, b, dim + x.dim() if dim < 0 else dim, act,
                   spec[0] if alpha is None else alpha, spec[1] if gain is None else gain,
                   -1.0 if clamp is None else clamp)
    dim, alpha, gain, clamp = _check_args(x, b, dim, act, alpha, gain, clamp)
    if _backend.use_kernel(x) and _HAS_OP:
        return _OP(x, b, dim, act, alpha, gain, clamp)
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
# Fake kernels (shape inference for torch.compile / meta tensors). Autograd is registered
# in C++ (csrc/autograd/bias_act.cpp): bias_act's backward is the op bias_act_grad, whose
# own backward gives double backward (and any order for linear, relu and lrelu).
# --------------------------------------------------------------------------------------


def _bias_act_fake(x, b, dim, act, alpha, gain, clamp):
    # The dispatcher sends a call with any meta tensor here: check what the real kernels
    # check about devices.
    if b is not None and b.device != x.device:
        raise ValueError(f"bias_act: b is on {b.device} but x is on {x.device}")
    return torch.empty_like(x)


def _bias_act_grad_fake(grad, ref, b, dim, act, alpha, gain, clamp, ref_is_y, order, reduce):
    out = torch.empty_like(ref)
    sums = ref.new_empty((ref.shape[dim],) if reduce else (0,))
    return out, sums


_HAS_OP = _backend.op_available("bias_act") and _backend.op_available("bias_act_grad")
_OP = torch.ops.fastgan.bias_act.default if _HAS_OP else None
if _HAS_OP:
    torch.library.register_fake("fastgan::bias_act")(_bias_act_fake)
    torch.library.register_fake("fastgan::bias_act_grad")(_bias_act_grad_fake)
