"""Convolution and linear modules with a fused bias + activation, built on fastgan.ops.

* :class:`Conv2dAct`, :class:`ConvTranspose2dAct`, :class:`LinearAct` -- drop-ins for
  ``nn.Conv2d`` / ``nn.ConvTranspose2d`` / ``nn.Linear`` (subclasses: same parameters and
  state_dict) followed by an activation, the bias and activation fused into one pass.

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

from .._backend import memory_format_of, stock_layers
from .bias_act import _ActTail
from ..ops.upsample_conv2d import downsample_conv2d, upsample_conv2d

__all__ = ["Conv2dAct", "ConvTranspose2dAct", "DownConv2d", "LinearAct", "UpConv2d"]


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


# Convolutions with at most this many input rows per output pixel (in_channels * kh * kw)
# compute their input gradient as col2im(W^T G): measured for 1-channel images (16 rows).
# With 3-channel images (48 rows) the GEMM + col2im path lost to oneDNN in WGAN-GP's double
# backward (its own backward, im2col + batched GEMM, copies), so the bound stays at 16.
_THIN_IN_ROWS = 16


class _ThinConv2d(torch.autograd.Function):
    """conv2d (groups 1, dilation 1, zero padding) whose input gradient is computed as
    col2im(W^T G): for a thin input (in_channels * kh * kw <= _THIN_IN_ROWS, e.g. a
    discriminator's first layer on 1-channel images) oneDNN's input gradient is slow
    (~7 ms vs ~2 ms at 1 -> 32 channels, 4x4, stride 2, 28 px, batch 128). Forward and
    weight gradient are ATen's. The backward is made of differentiable ops, so gradient
    penalties (double backward) work."""

    @staticmethod
    def forward(ctx, x, w, stride, padding):
        ctx.save_for_backward(x, w)
        ctx.conv = (stride, padding)
        return F.conv2d(x, w, None, stride, padding)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        stride, padding = ctx.conv
        gx = gw = None
        if ctx.needs_input_grad[1]:
            gw = torch.ops.aten.convolution_backward(
                gy, x, w, None, list(stride), list(padding), [1, 1], False, [0, 0], 1,
                [False, True, False])[1]
        if ctx.needs_input_grad[0]:
            n, cout, ho, wo = gy.shape
            cin, kh, kw = w.shape[1], w.shape[2], w.shape[3]
            cols = torch.matmul(w.reshape(cout, cin * kh * kw).t(), gy.reshape(n, cout, ho * wo))
            gx = F.fold(cols, (x.shape[2], x.shape[3]), (kh, kw), stride=stride, padding=padding)
            gx = gx.contiguous(memory_format=memory_format_of(x))
        return gx, gw, None, None


class Conv2dAct(nn.Conv2d, _ActTail):
    """``nn.Conv2d`` (same parameters and state dict) followed by bias + activation: the
    fastgan kit runs the convolution without its bias and the bias + activation (+ gain,
    + clamp) as one :func:`fastgan.ops.bias_act` pass; under ``use_layers("stock")`` the
    convolution takes its bias and the activation follows as stock ops. ``gain`` defaults
    to 1 (a plain activation), not bias_act's sqrt(2) for relu/lrelu."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, act: str = "linear", alpha: Optional[float] = None,
                 gain: Optional[float] = 1.0, clamp: Optional[float] = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device, dtype)
        self._init_act(act, alpha, gain, clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if stock_layers():
            return self._tail(self._conv_forward(x, self.weight, self.bias), None)
        w = self.weight
        if (x.is_cpu and x.dim() == 4 and x.requires_grad and self.groups == 1
                and tuple(self.dilation) == (1, 1) and self.padding_mode == "zeros"
                and not isinstance(self.padding, str) and x.dtype == w.dtype
                and w.shape[1] * w.shape[2] * w.shape[3] <= _THIN_IN_ROWS
                and not torch.is_autocast_enabled("cpu")):
            y = _ThinConv2d.apply(x, w, tuple(self.stride), tuple(self.padding))
        else:
            y = self._conv_forward(x, w, None)
        return self._tail(y, self.bias, 1 if y.dim() == 4 else 0)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._act_repr()


# Transposed convolutions with at most this many output rows per input pixel
# (out_channels * kh * kw) run their forward on CPU as one GEMM + col2im (F.fold): oneDNN
# is slow for such thin layers (DCGAN's last layer, 32 -> 1 channel, 4x4, stride 2, at
# 14 -> 28 px, batch 128: ~6 ms vs ~1 ms). The backward stays oneDNN's, which is fast there.
_THIN_ROWS = 64


class _ThinConvTranspose2d(torch.autograd.Function):
    """conv_transpose2d (groups 1, dilation 1, no output padding): forward as
    col2im(W^T X), backward as ATen's convolution_backward (differentiable again)."""

    @staticmethod
    def forward(ctx, x, w, stride, padding, out_hw):
        n, cin, h, wd = x.shape
        cout, kh, kw = w.shape[1], w.shape[2], w.shape[3]
        cols = torch.matmul(w.reshape(cin, cout * kh * kw).t(), x.reshape(n, cin, h * wd))
        ctx.save_for_backward(x, w)
        ctx.conv = (stride, padding)
        return F.fold(cols, out_hw, (kh, kw), stride=stride, padding=padding)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        stride, padding = ctx.conv
        gx, gw, _ = torch.ops.aten.convolution_backward(
            gy, x, w, None, list(stride), list(padding), [1, 1], True, [0, 0], 1,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False])
        return gx, gw, None, None, None


def _fast_conv_transpose2d(m: nn.ConvTranspose2d, x: torch.Tensor, output_padding) -> torch.Tensor:
    """F.conv_transpose2d(x, m.weight) (no bias), with two CPU shortcuts where oneDNN is
    slow: a 1x1 input (DCGAN's first layer: z -> s0 x s0) is one matrix product, and a thin
    layer (see _THIN_ROWS) runs its forward as GEMM + col2im. Same results up to float
    rounding; everything else (and autocast) goes to F.conv_transpose2d."""
    w = m.weight
    if (x.is_cpu and x.dim() == 4 and m.groups == 1 and tuple(m.dilation) == (1, 1)
            and tuple(output_padding) == (0, 0) and x.dtype == w.dtype
            and not torch.is_autocast_enabled("cpu")):
        cin, cout, kh, kw = w.shape
        n, _, h, wd = x.shape
        if (h, wd) == (1, 1) and tuple(m.stride) == (1, 1) and tuple(m.padding) == (0, 0):
            return torch.mm(x.reshape(n, cin), w.reshape(cin, cout * kh * kw)).reshape(n, cout, kh, kw)
        if cout * kh * kw <= _THIN_ROWS:
            sh, sw = m.stride
            ph, pw = m.padding
            out_hw = ((h - 1) * sh - 2 * ph + kh, (wd - 1) * sw - 2 * pw + kw)
            return _ThinConvTranspose2d.apply(x, w, (sh, sw), (ph, pw), out_hw)
    return F.conv_transpose2d(x, w, None, m.stride, m.padding, output_padding, m.groups, m.dilation)


class ConvTranspose2dAct(nn.ConvTranspose2d, _ActTail):
    """``nn.ConvTranspose2d`` followed by an activation, with the bias + activation fused
    (the transposed convolution without bias, then :func:`fastgan.ops.bias_act`; on CPU
    with two shortcuts where oneDNN is slow, see ``_fast_conv_transpose2d``). Under
    ``use_layers("stock")``: ``F.conv_transpose2d`` with its bias, then stock ops.

    Parameters and state_dict are exactly those of ``nn.ConvTranspose2d`` (it is a
    subclass), so a stock layer's weights load unchanged. ``act``/``alpha``/``gain``/``clamp``
    follow bias_act; ``gain`` defaults to 1 here (a plain activation), not bias_act's
    sqrt(2) for relu/lrelu.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, act: str = "relu",
                 alpha: Optional[float] = None, gain: Optional[float] = 1.0, clamp: Optional[float] = None,
                 padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding,
                         groups, bias, dilation, padding_mode, device, dtype)
        self._init_act(act, alpha, gain, clamp)

    def forward(self, input: torch.Tensor, output_size=None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only 'zeros' padding mode is supported for ConvTranspose2d")
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation
        )
        channel_dim = 1 if input.ndim == 4 else 0
        if stock_layers():
            y = F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                   output_padding, self.groups, self.dilation)
            return self._tail(y, None, channel_dim)
        y = _fast_conv_transpose2d(self, input, output_padding)
        return self._tail(y, self.bias, channel_dim)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._act_repr()


class LinearAct(nn.Linear, _ActTail):
    """``nn.Linear`` (same parameters) followed by bias + activation, fused as in Conv2dAct."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None, *,
                 act: str = "linear", alpha: Optional[float] = None, gain: Optional[float] = 1.0,
                 clamp: Optional[float] = None) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self._init_act(act, alpha, gain, clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if stock_layers():
            return self._tail(F.linear(x, self.weight, self.bias), None, x.dim() - 1)
        return self._tail(F.linear(x, self.weight), self.bias, x.dim() - 1)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._act_repr()
