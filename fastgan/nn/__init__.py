"""Drop-in modules built on fastgan.ops."""

from .bias_act import BiasAct, FusedLeakyReLU
from .equalized import EqualConv2d, EqualLinear

__all__ = ["BiasAct", "EqualConv2d", "EqualLinear", "FusedLeakyReLU"]
