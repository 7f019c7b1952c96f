"""StyleGAN2's modulated convolution (Karras et al. 2020) with per-pixel noise and a fused
bias + activation."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._backend import stock_layers
from ..ops.conv2d_gradfix import scaled_input_conv2d
from ..ops.conv2d_resample import conv2d_resample
from ..ops.upfirdn2d import setup_filter, upfirdn2d
from .bias_act import _ActTail
from .equalized import EqualLinear

__all__ = ["MODCONV_MODES", "ModulatedConv2d"]

MODCONV_MODES = ("auto", "batched", "grouped")


class ModulatedConv2d(nn.Module, _ActTail):
    """Modulated k x k convolution with optional demodulation and 2x up-sampling
    (transposed convolution + FIR [1, 3, 3, 1]), then noise, bias and activation.

    ``forward(x, w)``: the style ``affine(w)`` scales the input channels of ``weight`` per
    sample. Two forms compute the same function with the same parameters:

    * ``"batched"`` (the fastgan kit's default): the style moved onto the activations --
      scale the input channels, run ONE convolution with the shared weight over the whole
      batch (on CPU in channels_last, where oneDNN's transposed convolution and the FIR
      kernels are fastest), then scale the output channels by the demodulation
      coefficients (a small matrix product), fused with the noise in one ``addcmul``.
      The product ``x * style`` is not saved for backward on inputs of 2**20 elements or
      more (``fastgan.ops.conv2d_gradfix.scaled_input_conv2d``: made again in backward,
      one elementwise pass; x is kept by the layer before anyway);
    * ``"grouped"`` (the stock default, rosinality's form): per-sample weights, one
      grouped convolution over the batch.

    ``modconv="auto"`` picks by the layer kit in effect (see ``fastgan.use_layers``).
    """

    def __init__(self, in_ch: int, out_ch: int, k: int, w_dim: int, demod: bool = True, up: bool = False,
                 act: str = "lrelu", noise: bool = True, clamp: Optional[float] = None,
                 modconv: str = "auto") -> None:
        super().__init__()
        if modconv not in MODCONV_MODES:
            raise ValueError(f"modconv: expected one of {', '.join(MODCONV_MODES)}, got {modconv!r}")
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, k, k))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.noise_strength = nn.Parameter(torch.zeros([])) if noise else None
        self.scale = 1 / math.sqrt(in_ch * k * k)
        self.in_ch, self.out_ch, self.k, self.demod, self.up = in_ch, out_ch, k, demod, up
        self.modconv = modconv
        self.register_buffer("fir_taps", setup_filter([1, 3, 3, 1], separable=True), persistent=False)
        self._init_act(act, 0.2, math.sqrt(2.0) if act == "lrelu" else 1.0, clamp)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.affine(w)  # (n, in)
        stock = stock_layers()
        modconv = ("grouped" if stock else "batched") if self.modconv == "auto" else self.modconv
        if modconv == "batched":
            y = self._modulate_activations(x, style, stock)
        else:
            y = self._modulate_weights(x, style)
        return self._tail(y, self.bias)

    def _noise(self, y: torch.Tensor) -> Optional[torch.Tensor]:
        if self.noise_strength is None:
            return None
        n, _, h, w = y.shape
        return torch.randn(n, 1, h, w, device=y.device, dtype=y.dtype) * self.noise_strength.to(y.dtype)

    def _blur_up(self, y: torch.Tensor) -> torch.Tensor:
        """The FIR filter after a stride-2 transposed convolution (gain 4 keeps the mean)."""
        return upfirdn2d(y, self.fir_taps.float(), padding=1, gain=4.0)

    def _modulate_weights(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """The textbook form: per-sample weights, one grouped convolution over the batch."""
        n = x.shape[0]
        weight = self.weight[None] * (self.scale * style[:, None, :, None, None])  # (n, out, in, k, k)
        if self.demod:
            weight = weight * torch.rsqrt(weight.square().sum((2, 3, 4), keepdim=True) + 1e-8)
        weight = weight.to(x.dtype)
        x = x.reshape(1, n * self.in_ch, *x.shape[2:])
        if self.up:
            wt = weight.transpose(1, 2).reshape(n * self.in_ch, self.out_ch, self.k, self.k)
            y = F.conv_transpose2d(x, wt, stride=2, groups=n)
            y = self._blur_up(y.reshape(n, self.out_ch, *y.shape[2:]))
        else:
            y = F.conv2d(x, weight.reshape(n * self.out_ch, self.in_ch, self.k, self.k), padding=self.k // 2, groups=n)
            y = y.reshape(n, self.out_ch, *y.shape[2:])
        if not y.is_contiguous() and not y.is_contiguous(memory_format=torch.channels_last):
            # A channels_last grouped output viewed as [n, out, h, w] has a batch stride of
            # `out`. Passing such a view on breaks a later grouped convolution's weight
            # gradient (PyTorch 2.14 CPU, float64 path), so make it a proper channels_last tensor.
            y = y.contiguous(memory_format=torch.channels_last)
        noise = self._noise(y)
        return y if noise is None else y + noise

    def _modulate_activations(self, x: torch.Tensor, style: torch.Tensor, stock: bool) -> torch.Tensor:
        """The same function with the style moved onto the activations (see the class doc)."""
        weight = self.weight * self.scale
        s = style.to(x.dtype)
        wx = weight.to(x.dtype)
        if stock:
            xs = x * s[:, :, None, None]
            if self.up:
                y = self._blur_up(F.conv_transpose2d(xs, wx.transpose(0, 1), stride=2))
            else:
                y = F.conv2d(xs, wx, padding=self.k // 2)
        else:
            # the fastgan kit: x * style is not saved for backward on large maps (it would be
            # one more activation-sized tensor per layer; see scaled_input_conv2d)
            if not self.up:
                y = scaled_input_conv2d(x, s, wx, padding=self.k // 2)
            else:
                if x.is_cpu:
                    # oneDNN's stride-2 transposed convolution is faster in channels_last (and
                    # upfirdn2d too): the rest of G then runs in that layout
                    x = x.contiguous(memory_format=torch.channels_last)
                    wx = wx.contiguous(memory_format=torch.channels_last)
                y = conv2d_resample(x, wx, self.fir_taps.float(), up=2, padding=self.k // 2, flip_weight=False,
                                    input_scale=s)
        noise = self._noise(y)
        if self.demod:
            d = torch.rsqrt(style.square() @ weight.square().sum((2, 3)).t() + 1e-8).to(y.dtype)  # (n, out)
            d = d[:, :, None, None]
            return y * d if noise is None else torch.addcmul(noise, y, d)
        return y if noise is None else y + noise

    def extra_repr(self) -> str:
        return (f"{self.in_ch}, {self.out_ch}, k={self.k}, demod={self.demod}, up={self.up}, "
                f"noise={self.noise_strength is not None}, modconv={self.modconv!r}") + self._act_repr()
