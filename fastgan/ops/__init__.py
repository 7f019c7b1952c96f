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

__all__ = [
    "ACTIVATIONS",
    "FastganFallbackWarning",
    "backend_info",
    "bias_act",
    "bias_act_ref",
    "fused_leaky_relu",
    "get_backend",
    "set_backend",
    "use_reference",
]
