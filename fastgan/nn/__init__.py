"""Drop-in modules built on fastgan.ops."""

from .bias_act import BiasAct, FusedLeakyReLU

__all__ = ["BiasAct", "FusedLeakyReLU"]
