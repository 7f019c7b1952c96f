"""Resampling convolution modules built on fastgan.ops.

* :class:`UpConv2d` -- transposed convolution (stride ``up``) + FIR low-pass filter + bias +
  activation (StyleGAN2's upsampling layer), via :func:`fastgan.ops.upsample_conv2d`.
* :class:`DownConv2d` -- FIR filter + strided convolution + bias + activation (the
  discriminator's mirror), via :func:`fastgan.ops.downsample_conv2d`.
* :class:`ConvTranspose2dAct` -- a drop-in ``nn.ConvTranspose2d`` + activation with the same
  parameters and state_dict, the bias and activation fused into one pass.

UpConv2d / DownConv2d hold plain weights ``[out, in, k, k]`` initialized like ``nn.Conv2d``
(Kaiming-uniform, a=sqrt(5); bias uniform in +-1/sqrt(fan_in)); no equalized learning rate,
so optimizers and weight decay see the usual parameters. The filter is a Python tuple
attribute (not a buffer), so torch.compile treats it as a constant.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.bias_act import bias_act
from ..ops.upsample_conv2d import downsample_conv2d, upsample_conv2d

__all__ = ["UpConv2d", "DownConv2d", "ConvTranspose2dAct"]


def _as_filter(f):
    if isinstance(f, torch.Tensor):
        return f.detach().cpu().double().tolist()
    return tuple(tuple(r) if isinstance(r, (list, tuple)) else r for r in f)


class _ResampleConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, bias, act, filter, factor, alpha,
                 gain, clamp, device=None, dtype=None):
        super().__init__()
        if not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"kernel_size must be an int >= 1, got {kernel_size!r}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.act, self.alpha, self.gain, self.clamp = act, alpha, gain, clamp
        self.filter = _as_filter(filter)
        self.factor = factor
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size, **kw))
        self.bias = nn.Parameter(torch.empty(out_channels, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * self.kernel_size * self.kernel_size
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"factor={self.factor}, act={self.act!r}, filter={self.filter}, bias={self.bias is not None}")


class UpConv2d(_ResampleConv2d):
    """``[N, in, H, W] -> [N, out, H * up, W * up]``: transposed conv + FIR + bias + act."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True,
                 act: str = "lrelu", filter: Sequence = (1, 3, 3, 1), up: int = 2,
                 alpha: Optional[float] = None, gain: Optional[float] = None,
                 clamp: Optional[float] = None, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, bias, act, filter, up, alpha,
                         gain, clamp, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_conv2d(x, self.weight, self.bias, self.filter, self.factor, self.act,
                               self.alpha, self.gain, self.clamp)


class DownConv2d(_ResampleConv2d):
    """``[N, in, H, W] -> [N, out, H // down, W // down]``: FIR + strided conv + bias + act."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True,
                 act: str = "lrelu", filter: Sequence = (1, 3, 3, 1), down: int = 2,
                 alpha: Optional[float] = None, gain: Optional[float] = None,
                 clamp: Optional[float] = None, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, bias, act, filter, down, alpha,
                         gain, clamp, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return downsample_conv2d(x, self.weight, self.bias, self.filter, self.factor, self.act,
                                 self.alpha, self.gain, self.clamp)


class ConvTranspose2dAct(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` followed by an activation, with the bias + activation fused
    (``F.conv_transpose2d`` without bias, then :func:`fastgan.ops.bias_act`).

    Parameters and state_dict are exactly those of ``nn.ConvTranspose2d`` (it is a
    subclass), so a stock layer's weights load unchanged. ``act``/``alpha``/``gain``/``clamp``
    follow bias_act; ``gain`` defaults to 1 here (a plain activation), not bias_act's
    sqrt(2) for relu/lrelu.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, act: str = "relu",
                 alpha: Optional[float] = None, gain: float = 1.0, clamp: Optional[float] = None,
                 padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding,
                         groups, bias, dilation, padding_mode, device, dtype)
        self.act, self.alpha, self.act_gain, self.clamp = act, alpha, gain, clamp

    def forward(self, input: torch.Tensor, output_size=None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only 'zeros' padding mode is supported for ConvTranspose2d")
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation
        )
        y = F.conv_transpose2d(input, self.weight, None, self.stride, self.padding,
                               output_padding, self.groups, self.dilation)
        channel_dim = 1 if y.ndim == 4 else 0
        b = self.bias
        if b is not None and b.dtype != y.dtype:  # autocast: the conv ran in half precision
            b = b.to(y.dtype)
        return bias_act(y, b, channel_dim, self.act, self.alpha, self.act_gain, self.clamp)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", act={self.act!r}, gain={self.act_gain}"
