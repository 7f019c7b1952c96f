"""GAN models, built from the layer kit :mod:`fastgan.nn` only. Every model runs as the
fastgan kit (fused kernels, the default) or, under ``fastgan.use_layers("stock")``, as
plain PyTorch, with the same parameters and state dicts.

The constructors take plain arguments; a training config is mapped onto them by
:func:`fastgan.train.build.build_models`."""

from .dcgan import DCGANDiscriminator, DCGANGenerator

__all__ = ["DCGANGenerator", "DCGANDiscriminator"]
