"""Drop-in modules built on fastgan.ops."""

from .bias_act import BiasAct, FusedLeakyReLU
from .conv import ConvTranspose2dAct, DownConv2d, UpConv2d

__all__ = ["BiasAct", "ConvTranspose2dAct", "DownConv2d", "FusedLeakyReLU", "UpConv2d"]
