"""rosinality's ``op`` package (stylegan2-pytorch) on fastgan's kernels:
``import fastgan.compat.rosinality as op``."""

from __future__ import annotations

import torch

from ..nn.bias_act import FusedLeakyReLU
from .stylegan2_ada import conv2d_gradfix  # the same module in both code bases
from ..ops.bias_act import fused_leaky_relu
from ..ops.upfirdn2d import upfirdn2d as _upfirdn2d

__all__ = ["FusedLeakyReLU", "conv2d_gradfix", "fused_leaky_relu", "upfirdn2d"]


def upfirdn2d(input: torch.Tensor, kernel: torch.Tensor, up=1, down=1, pad=(0, 0)) -> torch.Tensor:
    """rosinality's contract: ``kernel`` is a 2-D ``[kh, kw]`` filter applied as a true
    convolution (their native code flips it for conv2d); ``pad`` is ``(p0, p1)`` for both
    axes or ``(x0, x1, y0, y1)``; ``up``/``down`` an int or ``(x, y)``."""
    if len(pad) == 2:
        pad = (pad[0], pad[1], pad[0], pad[1])
    if not isinstance(kernel, torch.Tensor) or kernel.ndim != 2:
        raise ValueError("upfirdn2d: kernel must be a 2-D tensor [kh, kw]")
    kernel = kernel.to(device=input.device, dtype=torch.float32)
    # up / down go through as given: fastgan's upfirdn2d takes an int or (x, y) and checks them.
    return _upfirdn2d(input, kernel, up=up, down=down, padding=list(pad))
