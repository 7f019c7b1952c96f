"""fastgan's layer kit: drop-in modules built on fastgan.ops, which every model builds from.

A module that replaces a stock one keeps its parameter names (``Conv2dAct`` is an
``nn.Conv2d``, ``BatchNormAct`` an ``nn.BatchNorm2d`` ...), so state dicts move between
them. ``fastgan.use_layers("stock")`` runs every module here as the textbook composition
of stock PyTorch ops it replaces (same parameters, same function): the baseline of the A/B
benchmarks and of ``fastgan train --layers stock``.
"""

from .._backend import (LAYER_KITS, activation_checkpointing_allowed, memory_format_of,  # noqa: F401
                        no_activation_checkpointing, stock_layers, use_layers)
from .bias_act import BiasAct, FusedLeakyReLU
from .conv import Conv2dAct, ConvTranspose2dAct, DownConv2d, LinearAct, UpConv2d
from .equalized import EqualConv2d, EqualLinear
from .modulated import MODCONV_MODES, ModulatedConv2d
from .norm import BatchNormAct, MinibatchStdDev, PixelNorm, minibatch_stddev, pixel_norm
from .resample import Blur, Downsample, Upsample

__all__ = [
    "LAYER_KITS",
    "MODCONV_MODES",
    "BatchNormAct",
    "BiasAct",
    "Blur",
    "Conv2dAct",
    "ConvTranspose2dAct",
    "DownConv2d",
    "Downsample",
    "EqualConv2d",
    "EqualLinear",
    "FusedLeakyReLU",
    "LinearAct",
    "MinibatchStdDev",
    "ModulatedConv2d",
    "PixelNorm",
    "UpConv2d",
    "Upsample",
    "minibatch_stddev",
    "pixel_norm",
    "stock_layers",
    "activation_checkpointing_allowed",
    "no_activation_checkpointing",
    "use_layers",
]
