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
from .conv2d_resample import conv2d_resample
from .upfirdn2d import (
    downsample2d,
    filter2d,
    setup_filter,
    upfirdn2d,
    upfirdn2d_ref,
    upsample2d,
)

__all__ = [
    "ACTIVATIONS",
    "FastganFallbackWarning",
    "backend_info",
    "bias_act",
    "bias_act_ref",
    "conv2d_resample",
    "downsample2d",
    "filter2d",
    "setup_filter",
    "upfirdn2d",
    "upfirdn2d_ref",
    "upsample2d",
    "fused_leaky_relu",
    "get_backend",
    "set_backend",
    "use_reference",
]
