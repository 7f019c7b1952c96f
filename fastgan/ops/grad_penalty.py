r"""Per-sample gradient penalty in one pass over the gradients.

.. math::

    p_n = \lVert g_n \rVert^2 \quad (\text{center} = 0,\ \text{R1/R2}), \qquad
    p_n = (\lVert g_n \rVert - c)^2 \quad (\text{center} = c \ne 0,\ \text{WGAN-GP})

over every element of sample ``n`` of ``grads`` (dim 0 is the batch), then reduced by
``mean`` (default), ``sum`` or ``none``.

Design
------
The only pass over ``grads`` is the per-sample sum of squares, the registered op
``fastgan::grad_sqnorm`` (CPU and CUDA kernels, fixed-order deterministic reduction,
float32 accumulation for float32/float16/bfloat16 and float64 for float64). The rest works
on ``N`` numbers. The backward of ``grad_sqnorm`` is ``grads * (2 * upstream[n])``, one
broadcast multiply (one pass) written with stock differentiable ops, so

* the penalty's gradient ``dp/dg_n = 2 g_n (1 - c / ||g_n||) * upstream_n`` flows back into
  the graph that produced ``grads`` (``autograd.grad(..., create_graph=True)``) and reaches
  the discriminator's weights, and
* the backward is itself differentiable (gradgradcheck passes), so higher-order gradients
  work too.

Edge cases (documented contract)
--------------------------------
* ``||g_n|| = 0`` with ``center != 0``: the value is ``center^2`` and the gradient is
  defined as **0** there (the true derivative ``-c g/||g||`` has no limit at 0); no NaN.
* NaN or inf in ``grads`` gives NaN/inf in the affected samples' penalty and gradient (no
  crash, no silent replacement): a diverged discriminator stays visible, and a fp16
  GradScaler sees the inf and skips the step.

Result dtype: float64 for float64 ``grads``, else float32 (half inputs are accumulated and
returned in float32; a squared norm overflows float16 easily).
"""

from __future__ import annotations

import math

import torch

from .. import _backend
from ._common import FLOAT_DTYPES

__all__ = ["grad_penalty", "grad_penalty_ref", "grad_sqnorm", "grad_sqnorm_ref"]

_NUMBERS = (float, int)
_REDUCTIONS = ("mean", "sum", "none")


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_grads(grads) -> None:
    if not isinstance(grads, torch.Tensor):
        raise TypeError(f"grad_penalty: grads must be a tensor, got {type(grads).__name__}")
    if grads.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"grad_penalty: grads must be float32, float64, float16 or bfloat16, got {grads.dtype}"
        )
    if grads.dim() < 1:
        raise ValueError("grad_penalty: grads must have a batch dimension (dim >= 1), got a 0-d tensor")


def _per_sample(grads: torch.Tensor) -> torch.Tensor:
    """(N, M) view in the accumulation dtype (reshape(N, -1) is ambiguous for N = 0)."""
    return grads.to(_acc_dtype(grads.dtype)).reshape(grads.shape[0], math.prod(grads.shape[1:]))


def grad_sqnorm_ref(grads: torch.Tensor) -> torch.Tensor:
    """Reference of :func:`grad_sqnorm`: ``grads.flatten(1).square().sum(1)`` in the
    accumulation dtype."""
    _check_grads(grads)
    return _per_sample(grads).square().sum(1)


def grad_sqnorm(grads: torch.Tensor) -> torch.Tensor:
    """Per-sample squared L2 norm ``sum(grads[n] ** 2)``, shape ``(N,)``: float64 for
    float64 input, else float32. Differentiable to any order."""
    if _backend.use_kernel(grads) and _HAS_OP:
        return _OP(grads)  # checks in C++
    return grad_sqnorm_ref(grads)


def _reduce(p: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return p.mean()
    if reduction == "sum":
        return p.sum()
    return p


def _check_args(center, reduction) -> float:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"grad_penalty: reduction must be one of {', '.join(_REDUCTIONS)}; got {reduction!r}")
    try:
        center = float(center)
    except (TypeError, ValueError):
        raise TypeError(f"grad_penalty: center must be a number, got {type(center).__name__}") from None
    if center != center or center in (float("inf"), float("-inf")):
        raise ValueError(f"grad_penalty: center must be finite, got {center}")
    return center


def _from_sqnorm(s: torch.Tensor, center: float) -> torch.Tensor:
    if center == 0.0:
        return s
    # sqrt has an infinite derivative at 0: take it at 1 instead and select c^2 there, so
    # the gradient at a zero norm is 0 (not NaN). NaN passes through (NaN == 0 is False).
    zero = s == 0
    norm = torch.where(zero, torch.ones_like(s), s).sqrt()
    return torch.where(zero, torch.full_like(s, center * center), (norm - center).square())


def grad_penalty_ref(grads: torch.Tensor, center: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    """The naive definition with stock ops (norm, then subtract, square, reduce): the test
    reference of :func:`grad_penalty` (torch's norm backward also gives 0 at a zero norm)."""
    _check_grads(grads)
    center = _check_args(center, reduction)
    g = _per_sample(grads)
    if center == 0.0:
        p = g.square().sum(1)
    else:
        p = (g.norm(dim=1) - center).square()
    return _reduce(p, reduction)


def grad_penalty(grads: torch.Tensor, center: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    """Gradient penalty of a batch of gradients (see the module docstring).

    Args:
        grads: ``(N, ...)`` gradients, e.g. ``autograd.grad(D(x).sum(), x, create_graph=True)``.
            Any layout; contiguous and channels_last are read in place.
        center: 0 for ``||g||^2`` (R1, R2), 1 for ``(||g|| - 1)^2`` (WGAN-GP).
        reduction: ``'mean'`` over samples (default), ``'sum'`` or ``'none'`` (shape ``(N,)``).
    """
    if (_backend.use_kernel(grads) and _HAS_PENALTY_OP and type(center) in _NUMBERS
            and type(reduction) is str):
        # One op (csrc/autograd/grad_penalty.cpp): the checks, the pass over grads, the N
        # norms and one autograd node, all in C++.
        return _PENALTY_OP(grads, center, reduction)
    _check_grads(grads)
    center = _check_args(center, reduction)
    return _reduce(_from_sqnorm(grad_sqnorm(grads), center), reduction)


# --------------------------------------------------------------------------------------
# Fake kernel of fastgan::grad_sqnorm. Autograd is in C++ (csrc/autograd/grad_sqnorm.cpp):
# the backward is grads * (2 * upstream[n]), one broadcast multiply of differentiable ATen
# ops, so higher orders work.
# --------------------------------------------------------------------------------------


def _grad_sqnorm_fake(grads):
    torch._check(grads.dim() >= 1, lambda: "grad_sqnorm: grads must have a batch dimension")
    return grads.new_empty((grads.shape[0],), dtype=_acc_dtype(grads.dtype))


# A build without these ops (older than this code) runs the references, with a warning.
_HAS_OP = _backend.op_available("grad_sqnorm")
_OP = torch.ops.fastgan.grad_sqnorm.default if _HAS_OP else None
if _HAS_OP:
    torch.library.register_fake("fastgan::grad_sqnorm")(_grad_sqnorm_fake)
# fastgan::grad_penalty is composite (grad_sqnorm + ATen): no fake kernel of its own.
_HAS_PENALTY_OP = _HAS_OP and _backend.op_available("grad_penalty")
_PENALTY_OP = torch.ops.fastgan.grad_penalty.default if _HAS_PENALTY_OP else None
