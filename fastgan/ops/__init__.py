"""fastgan's ops: each runs a compiled kernel when available, else its pure-PyTorch
reference (see :mod:`fastgan._backend`)."""

from .._backend import (
    FastganFallbackWarning,
    backend_info,
    get_backend,
    set_backend,
    use_reference,
)
from .batch_norm_act import batch_norm_act, batch_norm_act_ref
from .bias_act import ACTIVATIONS, bias_act, bias_act_ref, fused_leaky_relu
from .conv2d_gradfix import conv2d, conv_transpose2d, linear, no_weight_gradients, weight_gradients_disabled
from .grad_penalty import grad_penalty, grad_penalty_ref, grad_sqnorm, grad_sqnorm_ref
from .conv2d_resample import conv2d_resample
from .upfirdn2d import (
    downsample2d,
    filter2d,
    setup_filter,
    upfirdn2d,
    upfirdn2d_ref,
    upsample2d,
)
from .upsample_conv2d import (
    downsample_conv2d,
    downsample_conv2d_ref,
    upsample_conv2d,
    upsample_conv2d_ref,
)

__all__ = [
    "ACTIVATIONS",
    "backend_info",
    "batch_norm_act",
    "batch_norm_act_ref",
    "bias_act",
    "bias_act_ref",
    "conv2d",
    "conv2d_resample",
    "conv_transpose2d",
    "downsample2d",
    "downsample_conv2d",
    "downsample_conv2d_ref",
    "FastganFallbackWarning",
    "filter2d",
    "fused_leaky_relu",
    "get_backend",
    "grad_penalty",
    "grad_penalty_ref",
    "grad_sqnorm",
    "grad_sqnorm_ref",
    "linear",
    "no_weight_gradients",
    "set_backend",
    "setup_filter",
    "upfirdn2d",
    "upfirdn2d_ref",
    "upsample2d",
    "upsample_conv2d",
    "upsample_conv2d_ref",
    "use_reference",
    "weight_gradients_disabled",
]
