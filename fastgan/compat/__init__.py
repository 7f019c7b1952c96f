"""Drop-in names for existing GAN code bases, mapped onto fastgan.ops:

* ``fastgan.compat.stylegan2_ada``: StyleGAN2-ADA's ``torch_utils.ops`` modules
  (``from fastgan.compat.stylegan2_ada import upfirdn2d; upfirdn2d.upfirdn2d(x, f)``);
* ``fastgan.compat.rosinality``: rosinality's ``op`` package
  (``import fastgan.compat.rosinality as op``).
"""

from . import rosinality, stylegan2_ada

__all__ = ["rosinality", "stylegan2_ada"]
