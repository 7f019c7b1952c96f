"""StyleGAN2-ADA's ``torch_utils.ops`` module names on fastgan's kernels. Replace
``from torch_utils.ops import upfirdn2d`` with
``from fastgan.compat.stylegan2_ada import upfirdn2d``; the functions keep their
signatures (``impl='ref'`` selects fastgan's pure-PyTorch reference, any other value the
compiled kernels where available)."""

from . import bias_act, conv2d_gradfix, conv2d_resample, upfirdn2d

__all__ = ["bias_act", "conv2d_gradfix", "conv2d_resample", "upfirdn2d"]
