"""StyleGAN2-ADA's ``torch_utils.ops.bias_act`` on :func:`fastgan.ops.bias_act`."""

from __future__ import annotations

from ...ops.bias_act import ACTIVATIONS as activation_funcs
from ...ops.bias_act import bias_act as _bias_act
from ...ops.bias_act import bias_act_ref as _bias_act_ref

__all__ = ["bias_act", "activation_funcs"]


def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None, impl="cuda"):
    """``clamp(act(x + b) * gain, -clamp, clamp)``, StyleGAN2-ADA's signature."""
    fn = _bias_act_ref if impl == "ref" else _bias_act
    return fn(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
