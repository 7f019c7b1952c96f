"""Drop-in modules built on fastgan.ops."""

from .bias_act import BiasAct, FusedLeakyReLU
from .conv import ConvTranspose2dAct, DownConv2d, UpConv2d
from .equalized import EqualConv2d, EqualLinear
from .resample import Blur, Downsample, Upsample

__all__ = [
    "BiasAct",
    "Blur",
    "ConvTranspose2dAct",
    "DownConv2d",
    "Downsample",
    "EqualConv2d",
    "EqualLinear",
    "FusedLeakyReLU",
    "UpConv2d",
    "Upsample",
]
