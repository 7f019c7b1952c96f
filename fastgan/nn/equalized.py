"""Convolution and fully connected layers with equalized learning rate (Karras et al.,
ProGAN / StyleGAN2): the stored weight is ``N(0, 1) / lr_multiplier`` and is scaled by
``lr_multiplier / sqrt(fan_in)`` at every call, so every layer learns at the same speed
under Adam whatever its fan-in. The bias is stored as ``bias_init / lr_multiplier`` and
scaled by ``lr_multiplier``.

They run on :mod:`fastgan.ops.conv2d_gradfix`, so a gradient penalty's first backward
skips their weight gradients inside :func:`fastgan.ops.no_weight_gradients`.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import nn

from ..ops.bias_act import ACTIVATIONS, bias_act
from ..ops.conv2d_gradfix import conv2d, linear

__all__ = ["EqualConv2d", "EqualLinear"]


def _bias_for(b: Optional[torch.Tensor], gain: float, x: torch.Tensor) -> Optional[torch.Tensor]:
    if b is None:
        return None
    if gain != 1:
        b = b * gain
    return b.to(x.dtype) if b.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type) else b


class EqualConv2d(nn.Module):
    """``nn.Conv2d``-like layer with equalized learning rate (square kernel, no groups).

    ``weight``: (out, in, k, k) stored parameter; ``bias``: (out,) or None.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("kernel_size", kernel_size), ("stride", stride)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"EqualConv2d: {name} must be a positive int, got {v!r}")
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"EqualConv2d: padding must be a non-negative int, got {padding!r}")
        if not lr_multiplier > 0:
            raise ValueError(f"EqualConv2d: lr_multiplier must be > 0, got {lr_multiplier}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding, self.lr_multiplier = stride, padding, float(lr_multiplier)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init) / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_channels * kernel_size * kernel_size)

    def runtime_weight(self) -> torch.Tensor:
        """The weight the convolution uses: ``weight * lr_multiplier / sqrt(fan_in)``."""
        return self.weight * self.weight_gain

    def runtime_bias(self) -> Optional[torch.Tensor]:
        return None if self.bias is None else self.bias * self.lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.runtime_weight()
        if w.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
            w = w.to(x.dtype)
        return conv2d(x, w, _bias_for(self.bias, self.lr_multiplier, x), self.stride, self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, bias={self.bias is not None}, lr_multiplier={self.lr_multiplier}"
        )


class EqualLinear(nn.Module):
    """``nn.Linear``-like layer with equalized learning rate; with ``activation`` (any
    :data:`fastgan.ops.ACTIVATIONS` name, with its default gain, e.g. lrelu: slope 0.2,
    gain sqrt(2)) the bias and activation run fused in :func:`fastgan.ops.bias_act`."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activation: Optional[str] = None,
    ) -> None:
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"EqualLinear: {name} must be a positive int, got {v!r}")
        if not lr_multiplier > 0:
            raise ValueError(f"EqualLinear: lr_multiplier must be > 0, got {lr_multiplier}")
        if activation is not None and activation not in ACTIVATIONS:
            raise ValueError(f"EqualLinear: unknown activation {activation!r}; expected None or one of {', '.join(ACTIVATIONS)}")
        self.in_features, self.out_features = in_features, out_features
        self.lr_multiplier, self.activation = float(lr_multiplier), activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)

    def runtime_weight(self) -> torch.Tensor:
        return self.weight * self.weight_gain

    def runtime_bias(self) -> Optional[torch.Tensor]:
        return None if self.bias is None else self.bias * self.lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.runtime_weight()
        if w.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
            w = w.to(x.dtype)
        b = _bias_for(self.bias, self.lr_multiplier, x)
        if self.activation is None:
            return linear(x, w, b)
        y = linear(x, w)
        if b is not None and b.dtype != y.dtype:
            b = b.to(y.dtype)  # autocast: linear ran in the lower precision
        return bias_act(y, b, dim=y.dim() - 1, act=self.activation)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, "
            f"lr_multiplier={self.lr_multiplier}, activation={self.activation!r}"
        )
