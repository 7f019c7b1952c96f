"""Drop-in modules built on fastgan.ops."""

from .bias_act import BiasAct, FusedLeakyReLU
from .resample import Blur, Downsample, Upsample

__all__ = ["BiasAct", "Blur", "Downsample", "FusedLeakyReLU", "Upsample"]
