"""StyleGAN2-ADA's (and rosinality's) ``conv2d_gradfix`` names on
:mod:`fastgan.ops.conv2d_gradfix`: ``conv2d``, ``conv_transpose2d`` and the
``no_weight_gradients()`` context, double-backward-safe on current PyTorch."""

from __future__ import annotations

import contextlib

from ...ops.conv2d_gradfix import conv2d, conv_transpose2d
from ...ops.conv2d_gradfix import no_weight_gradients as _no_weight_gradients

__all__ = ["conv2d", "conv_transpose2d", "enabled", "no_weight_gradients"]

# Read by StyleGAN2-ADA's training code; fastgan's wrappers need no global switch.
enabled = True


@contextlib.contextmanager
def no_weight_gradients(disable: bool = True):
    """``with no_weight_gradients():`` skips the weight gradients of :func:`conv2d` and
    :func:`conv_transpose2d` (StyleGAN3's ``disable`` argument is accepted too)."""
    with _no_weight_gradients(enabled=bool(disable)):
        yield
