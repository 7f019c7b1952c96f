"""fastgan's ops: each runs a compiled kernel when available, else its pure-PyTorch
reference (see :mod:`fastgan._backend`)."""

from .._backend import (
    FastganFallbackWarning,
    backend_info,
    get_backend,
    set_backend,
    use_reference,
)
from .bias_act import ACTIVATIONS, bias_act, bias_act_ref, fused_leaky_relu
from .conv2d_gradfix import conv2d, conv_transpose2d, linear, no_weight_gradients, weight_gradients_disabled
from .grad_penalty import grad_penalty, grad_penalty_ref, grad_sqnorm, grad_sqnorm_ref

__all__ = [
    "ACTIVATIONS",
    "FastganFallbackWarning",
    "backend_info",
    "bias_act",
    "bias_act_ref",
    "fused_leaky_relu",
    "conv2d",
    "conv_transpose2d",
    "get_backend",
    "grad_penalty",
    "grad_penalty_ref",
    "grad_sqnorm",
    "grad_sqnorm_ref",
    "linear",
    "no_weight_gradients",
    "set_backend",
    "use_reference",
    "weight_gradients_disabled",
]
