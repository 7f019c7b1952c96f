"""Convolution and fully connected layers with equalized learning rate (Karras et al.,
ProGAN / StyleGAN2): the stored weight is ``N(0, 1) / lr_multiplier`` and is scaled by
``lr_multiplier / sqrt(fan_in)`` at every call, so every layer learns at the same speed
under Adam whatever its fan-in. The bias is stored as ``bias_init / lr_multiplier`` and
scaled by ``lr_multiplier``.

Both take an optional activation (any :data:`fastgan.ops.ACTIVATIONS` name; ``gain`` and
``alpha`` default to the activation's, e.g. lrelu: slope 0.2, gain sqrt(2)) and ``clamp``,
run fused with the bias in :func:`fastgan.ops.bias_act`. :class:`EqualConv2d` also
resamples by 2 with a FIR filter, as StyleGAN2-ADA's ``conv2d_resample``: ``up=2`` runs the
fused block :func:`fastgan.ops.upsample_conv2d` (transposed convolution, then FIR + bias +
activation in one pass), ``down=2`` runs :func:`fastgan.ops.downsample_conv2d`.

The convolutions and matrix products are ATen's (``F.conv2d`` / ``F.linear``), not
:mod:`fastgan.ops.conv2d_gradfix`: its Python autograd function made a tiny layer ~20%
slower than stock, and skipping the weight gradients in R1's first backward measured no
gain (README, Training steps). Under ``use_layers("stock")`` they are the
textbook composition: ``F.conv2d`` with its bias, ``F.interpolate`` (nearest, for the box
filter (1, 1)) or the FIR reference for resampling, stock activations.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._backend import stock_layers
from ..ops.bias_act import ACTIVATIONS, bias_act
from ..ops.conv2d_gradfix import layer_conv2d
from ..ops.conv2d_resample import conv2d_resample
from ..ops.upfirdn2d import setup_filter
from ..ops.upsample_conv2d import downsample_conv2d, upsample_conv2d
from .bias_act import _ActTail

__all__ = ["EqualConv2d", "EqualLinear"]


def _bias_for(b: Optional[torch.Tensor], gain: float, x: torch.Tensor) -> Optional[torch.Tensor]:
    if b is None:
        return None
    if gain != 1:
        b = b * gain
    return b.to(x.dtype) if b.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type) else b


def _check_int(layer: str, name: str, v, low: int) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise ValueError(f"{layer}: {name} must be an int >= {low}, got {v!r}")


class EqualConv2d(nn.Module, _ActTail):
    """``nn.Conv2d``-like layer with equalized learning rate (square kernel, no groups),
    optional 2x FIR resampling (``up`` or ``down``) and a fused bias + activation.

    ``weight``: (out, in, k, k) stored parameter; ``bias``: (out,) or None. ``padding`` is
    the convolution's, as in conv2d_resample (``k // 2`` keeps the size, times ``up`` or
    divided by ``down``). ``filter``: the resampling FIR filter (1-D taps, separable).
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
        *,
        act: str = "linear",
        alpha: Optional[float] = None,
        gain: Optional[float] = None,
        clamp: Optional[float] = None,
        up: int = 1,
        down: int = 1,
        filter: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("kernel_size", kernel_size), ("stride", stride)):
            _check_int("EqualConv2d", name, v, 1)
        _check_int("EqualConv2d", "padding", padding, 0)
        for name, v in (("up", up), ("down", down)):
            if v not in (1, 2):
                raise ValueError(f"EqualConv2d: {name} must be 1 or 2, got {v!r}")
        if up > 1 and down > 1 or stride > 1 and (up > 1 or down > 1):
            raise ValueError("EqualConv2d: at most one of stride, up and down may exceed 1")
        if not lr_multiplier > 0:
            raise ValueError(f"EqualConv2d: lr_multiplier must be > 0, got {lr_multiplier}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding, self.lr_multiplier = stride, padding, float(lr_multiplier)
        self.up, self.down, self.filter = up, down, tuple(float(t) for t in filter)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init) / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_channels * kernel_size * kernel_size)
        self._init_act(act, alpha, gain, clamp)
        if up > 1 or down > 1:
            # the separable filter for conv2d_resample (a buffer: follows .to(device); not
            # in the state dict)
            self.register_buffer("fir_taps", setup_filter(list(self.filter), separable=True), persistent=False)
        # nearest-neighbour up-sampling: the stock composition is F.interpolate, as ProGAN's
        self._nearest = up == 2 and self.filter == (1.0, 1.0)

    def runtime_weight(self) -> torch.Tensor:
        """The weight the convolution uses: ``weight * lr_multiplier / sqrt(fan_in)``."""
        return self.weight * self.weight_gain

    def runtime_bias(self) -> Optional[torch.Tensor]:
        return None if self.bias is None else self.bias * self.lr_multiplier

    def forward(self, x: torch.Tensor, out_scale: float = 1.0) -> torch.Tensor:
        """``out_scale * layer(x)`` (a residual block's 1/sqrt(2)): folded into the weight
        or the activation's gain and clamp, no extra pass."""
        if stock_layers():
            y = self._stock(x)
            return y if out_scale == 1.0 else y * out_scale
        w = self.runtime_weight()
        if w.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
            w = w.to(x.dtype)
        gain, clamp = self.gain, self.clamp
        if out_scale != 1.0:
            if self.bias is None and self._is_identity():
                w = w * out_scale
            else:
                gain = (ACTIVATIONS[self.act].def_gain if gain is None else gain) * out_scale
                clamp = None if clamp is None else clamp * out_scale
        b = self.runtime_bias()
        if b is not None and b.dtype != x.dtype:
            b = b.to(x.dtype)
        k = self.kernel_size
        if (self.up > 1 or self.down > 1) and w.dtype != x.dtype:
            w = w.to(x.dtype)  # autocast: the resampling ops take x's dtype (no autocast rule)
        if self.up > 1 and k > 1:
            return upsample_conv2d(x, w, b, self.filter, self.up, self.act, self.alpha, gain, clamp,
                                   padding=self.padding)
        if self.down > 1 and k > 1:
            return downsample_conv2d(x, w, b, self.filter, self.down, self.act, self.alpha, gain, clamp,
                                     padding=self.padding)
        if self.up > 1 or self.down > 1:  # 1x1: conv2d_resample convolves at the lower resolution
            y = conv2d_resample(x, w, self.fir_taps.float(), up=self.up, down=self.down, padding=self.padding)
        elif self.act == "linear" and gain in (None, 1.0) and clamp is None:
            return layer_conv2d(x, w, b, self.stride, self.padding)  # the bias in the convolution's call
        else:
            y = layer_conv2d(x, w, None, self.stride, self.padding)
        if b is None and self.act == "linear" and gain in (None, 1.0) and clamp is None:
            return y
        if b is not None and b.dtype != y.dtype:
            b = b.to(y.dtype)  # autocast: the convolution ran in the lower precision
        return bias_act(y, b, 1, self.act, self.alpha, gain, clamp)

    def _stock(self, x: torch.Tensor) -> torch.Tensor:
        w = self.runtime_weight()
        if w.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
            w = w.to(x.dtype)
        b = _bias_for(self.bias, self.lr_multiplier, x)
        if (self.up > 1 or self.down > 1) and w.dtype != x.dtype:
            w, b = w.to(x.dtype), None if b is None else b.to(x.dtype)
        if self._nearest:
            y = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=self.padding)
        elif self.up > 1 or self.down > 1:
            y = conv2d_resample(x, w, self.fir_taps.float(), up=self.up, down=self.down, padding=self.padding)
            if b is not None:
                y = y + b.reshape(1, -1, 1, 1)
        else:
            y = F.conv2d(x, w, b, self.stride, self.padding)
        return self._tail(y, None)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}, bias={self.bias is not None}, lr_multiplier={self.lr_multiplier}")
        if self.up > 1 or self.down > 1:
            s += f", up={self.up}, down={self.down}, filter={self.filter}"
        return s + self._act_repr()


class EqualLinear(nn.Module, _ActTail):
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
        *,
        alpha: Optional[float] = None,
        gain: Optional[float] = None,
        clamp: Optional[float] = None,
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
        self._init_act(activation or "linear", alpha, gain, clamp)

    def runtime_weight(self) -> torch.Tensor:
        return self.weight * self.weight_gain

    def runtime_bias(self) -> Optional[torch.Tensor]:
        return None if self.bias is None else self.bias * self.lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.runtime_weight()
        if w.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
            w = w.to(x.dtype)
        b = _bias_for(self.bias, self.lr_multiplier, x)
        if self._is_identity():
            return F.linear(x, w, b)  # addmm: already one call
        if stock_layers():
            return self._tail(F.linear(x, w, b), None, x.dim() - 1)
        return self._tail(F.linear(x, w), b, x.dim() - 1)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, "
            f"lr_multiplier={self.lr_multiplier}, activation={self.activation!r}"
        ) + ("" if self.gain is None else f", gain={self.gain:g}") + ("" if self.clamp is None else f", clamp={self.clamp:g}")
