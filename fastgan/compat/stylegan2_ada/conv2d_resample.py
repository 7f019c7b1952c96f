"""StyleGAN2-ADA's ``torch_utils.ops.conv2d_resample`` on
:func:`fastgan.ops.conv2d_resample`."""

from ...ops.conv2d_resample import conv2d_resample

__all__ = ["conv2d_resample"]
