"""fastgan: fused C++/CUDA kernels for GAN training, with pure-PyTorch fallbacks."""

from . import nn, ops
from ._backend import backend_info, use_layers, use_reference

__version__ = "0.1.0"
__all__ = ["ops", "nn", "backend_info", "use_layers", "use_reference", "__version__"]
