"""GAN models. Every model is buildable with ``layers='fastgan'`` (fused bias + activation
kernels, the default) or ``layers='stock'`` (plain PyTorch) with identical state dicts.

The constructors take plain arguments; a training config is mapped onto them by
:func:`fastgan.train.build.build_models`."""

from .dcgan import DCGANDiscriminator, DCGANGenerator
from .layers import LAYER_KITS

__all__ = ["DCGANGenerator", "DCGANDiscriminator", "LAYER_KITS"]
