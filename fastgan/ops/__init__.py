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
from .upsample_conv2d import (
    downsample_conv2d,
    downsample_conv2d_ref,
    upsample_conv2d,
    upsample_conv2d_ref,
)

__all__ = [
    "ACTIVATIONS",
    "FastganFallbackWarning",
    "backend_info",
    "bias_act",
    "bias_act_ref",
    "downsample_conv2d",
    "downsample_conv2d_ref",
    "fused_leaky_relu",
    "get_backend",
    "set_backend",
    "upsample_conv2d",
    "upsample_conv2d_ref",
    "use_reference",
]
