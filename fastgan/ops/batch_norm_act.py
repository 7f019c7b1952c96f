r"""Batch normalization followed by an activation, fused.

.. math::

    y = \operatorname{clamp}\big(\operatorname{act}(w_c\,(x - \mu_c)\,\sigma_c^{-1} + b_c,\ \alpha)
        \cdot \text{gain},\ -\text{clamp},\ \text{clamp}\big),
    \qquad \sigma_c^{-1} = 1 / \sqrt{\operatorname{var}_c + \epsilon}

over channel dim 1 of ``x`` (N, C, ...). ``training=True`` uses the batch's mean and
biased variance and updates ``running_mean`` / ``running_var`` like
:func:`torch.nn.functional.batch_norm` (unbiased variance, factor ``momentum``); otherwise
the running statistics normalize. ``act`` is any of :data:`fastgan.ops.ACTIVATIONS`.

Design
------
The op ``fastgan::batch_norm_act`` returns ``(y, mean, invstd, var)`` (``var``: the unbiased
batch variance the running variance averages); its CPU kernel makes one
pass over ``x`` for the statistics (training) and one for ``y = act(x * a_c + c_c)``
(``a = w invstd``, ``c = b - mean a``): stock PyTorch needs a batch-norm pass and a separate
activation pass, each writing a full tensor. The backward (``fastgan::batch_norm_act_backward``)
recomputes the pre-activation from ``x``: one pass for ``sum(g)`` and ``sum(g (x - mean))``
(``g`` = the gradient at the pre-activation), one for ``dx``. Autograd is in C++; under
``create_graph`` the backward is built from differentiable ops (the statistics recomputed
from ``x``), so gradient penalties through batch norm get exact higher-order gradients.
On devices without a fused kernel (CUDA today) the op runs ATen's batch norm and then the
``bias_act`` kernel: the same results, without the saved pass.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .. import _backend
from .bias_act import ACTIVATIONS, bias_act_ref

__all__ = ["batch_norm_act", "batch_norm_act_ref"]

_NUMBERS = (float, int)


def _check_args(act, alpha, gain, clamp, momentum, eps):
    if act not in ACTIVATIONS:
        raise ValueError(f"batch_norm_act: unknown act {act!r}; expected one of {', '.join(ACTIVATIONS)}")
    for name, v in (("alpha", alpha), ("gain", gain), ("momentum", momentum), ("eps", eps)):
        if type(v) not in _NUMBERS and not isinstance(v, _NUMBERS):
            raise TypeError(f"batch_norm_act: {name} must be a number, got {type(v).__name__}")
    if clamp is not None and (not isinstance(clamp, _NUMBERS) or not clamp >= 0):
        raise ValueError(f"batch_norm_act: clamp must be None or a number >= 0, got {clamp!r}")


def batch_norm_act_ref(
    x: torch.Tensor,
    running_mean: Optional[torch.Tensor],
    running_var: Optional[torch.Tensor],
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    act: str = "relu",
    alpha: float = 0.2,
    gain: float = 1.0,
    clamp: Optional[float] = None,
) -> torch.Tensor:
    """The pure-PyTorch reference: :func:`torch.nn.functional.batch_norm`, then
    :func:`fastgan.ops.bias_act_ref`."""
    _check_args(act, alpha, gain, clamp, momentum, eps)
    y = F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    return bias_act_ref(y, None, 1, act, alpha, gain, clamp)


def batch_norm_act(
    x: torch.Tensor,
    running_mean: Optional[torch.Tensor],
    running_var: Optional[torch.Tensor],
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    act: str = "relu",
    alpha: float = 0.2,
    gain: float = 1.0,
    clamp: Optional[float] = None,
) -> torch.Tensor:
    """``bias_act(F.batch_norm(x, running_mean, running_var, weight, bias, training,
    momentum, eps), act=act, alpha=alpha, gain=gain, clamp=clamp)`` in one op.

    The arguments up to ``eps`` are :func:`torch.nn.functional.batch_norm`'s (running
    statistics updated in place when training). ``act``, ``alpha``, ``gain`` and ``clamp``
    are :func:`fastgan.ops.bias_act`'s, except that ``gain`` defaults to 1 and ``alpha`` to
    0.2 for every activation. ``weight`` and ``bias`` have ``x``'s dtype, or float32 for a
    float16/bfloat16 ``x`` (autocast). The result has ``x``'s layout.
    """
    if _backend.use_kernel(x) and _HAS_OP:
        if clamp is not None and not (type(clamp) in _NUMBERS and clamp >= 0):
            _check_args(act, alpha, gain, clamp, momentum, eps)
        # tensors, act and numbers are checked in C++ (errors name the argument)
        y, mean, _, var = _OP(x, weight, bias, None if training else running_mean,
                              None if training else running_var, training, eps, act, alpha, gain,
                              -1.0 if clamp is None else clamp)
        if training and (running_mean is not None or running_var is not None):
            with torch.no_grad():  # what ATen's batch norm does in training: one lerp call for both
                stats, batch = [], []
                for running, value in ((running_mean, mean), (running_var, var)):
                    if running is not None:
                        stats.append(running)
                        batch.append(value if value.dtype == running.dtype else value.to(running.dtype))
                torch._foreach_lerp_(stats, batch, momentum)
        return y
    return batch_norm_act_ref(x, running_mean, running_var, weight, bias, training, momentum, eps,
                              act, alpha, gain, clamp)


# --------------------------------------------------------------------------------------
# Fake kernels (torch.compile / meta tensors). Autograd is registered in C++
# (csrc/autograd/batch_norm_act.cpp).
# --------------------------------------------------------------------------------------


def _check_devices(x, **params):
    for name, t in params.items():
        if t is not None and t.device != x.device:
            raise ValueError(f"batch_norm_act: {name} is on {t.device} but x is on {x.device}")


def _batch_norm_act_fake(x, weight, bias, running_mean, running_var, training, eps, act, alpha,
                         gain, clamp):
    _check_devices(x, weight=weight, bias=bias, running_mean=running_mean, running_var=running_var)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    c = x.shape[1]
    return (torch.empty_like(x), x.new_empty((c,), dtype=acc), x.new_empty((c,), dtype=acc),
            x.new_empty((c,), dtype=acc))


def _batch_norm_act_backward_fake(grad, x, weight, bias, save_mean, save_invstd, training, act,
                                  alpha, gain, clamp, output_mask):
    _check_devices(x, grad=grad, weight=weight, bias=bias)
    c = x.shape[1]
    dx = torch.empty_like(x) if output_mask[0] else x.new_empty((0,))
    dw = weight.new_empty((c,) if output_mask[1] else (0,)) if weight is not None else x.new_empty((0,))
    db = bias.new_empty((c,) if output_mask[2] else (0,)) if bias is not None else x.new_empty((0,))
    return dx, dw, db


_HAS_OP = _backend.op_available("batch_norm_act") and _backend.op_available("batch_norm_act_backward")
_OP = torch.ops.fastgan.batch_norm_act.default if _HAS_OP else None
if _HAS_OP:
    torch.library.register_fake("fastgan::batch_norm_act")(_batch_norm_act_fake)
    torch.library.register_fake("fastgan::batch_norm_act_backward")(_batch_norm_act_backward_fake)
