"""Drop-in modules built on fastgan.ops."""

from .bias_act import BiasAct, FusedLeakyReLU
from .equalized import EqualConv2d, EqualLinear
from .resample import Blur, Downsample, Upsample

__all__ = ["BiasAct", "Blur", "Downsample", "EqualConv2d", "EqualLinear", "FusedLeakyReLU", "Upsample"]
