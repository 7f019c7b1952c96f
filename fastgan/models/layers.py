"""A small layer kit shared by fastgan's models, in two builds with the same parameters.

``layers='fastgan'`` runs every bias + activation (+ gain, + clamp) after a convolution,
linear layer or batch norm through :func:`fastgan.ops.bias_act` (one fused pass; the conv
itself runs without bias). ``layers='stock'`` runs the textbook composition (conv with
bias, then ``F.leaky_relu`` ...). Both builds own exactly the same parameters and buffers
under the same names, so a state dict moves freely between them (A/B benchmarks).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._backend import memory_format_of
from ..ops.batch_norm_act import batch_norm_act
from ..ops.bias_act import bias_act
from ..ops.conv2d_resample import conv2d_resample
from ..ops.upfirdn2d import setup_filter, upsample2d

LAYER_KITS = ("fastgan", "stock")
_STOCK_ACTS = ("linear", "relu", "lrelu", "tanh", "sigmoid")


def check_layers(layers: str) -> str:
    if layers not in LAYER_KITS:
        raise ValueError(f"layers: expected one of {', '.join(LAYER_KITS)}, got {layers!r}")
    return layers


def stock_bias_act(x: torch.Tensor, b: Optional[torch.Tensor], act: str, alpha: float = 0.2,
                   gain: float = 1.0, clamp: Optional[float] = None) -> torch.Tensor:
    """The unfused composition that :func:`fastgan.ops.bias_act` replaces (NCHW or NC)."""
    if b is not None:
        x = x + b.to(x.dtype).reshape((1, -1) + (1,) * (x.dim() - 2))
    if act == "relu":
        x = F.relu(x)
    elif act == "lrelu":
        x = F.leaky_relu(x, alpha)
    elif act == "tanh":
        x = torch.tanh(x)
    elif act == "sigmoid":
        x = torch.sigmoid(x)
    elif act != "linear":
        raise ValueError(f"act: stock layers support {', '.join(_STOCK_ACTS)}, got {act!r}")
    if gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


class _ActMixin:
    """Bias + activation tail: fused (fastgan) or stock."""

    def _init_act(self, layers: str, act: str, alpha: float, gain: float, clamp: Optional[float]) -> None:
        self.layers = check_layers(layers)
        if act not in _STOCK_ACTS:
            raise ValueError(f"act: expected one of {', '.join(_STOCK_ACTS)}, got {act!r}")
        self.act, self.alpha, self.gain, self.clamp = act, float(alpha), float(gain), clamp

    def _bias_act(self, x: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
        if b is None and self.act == "linear" and self.gain == 1.0 and self.clamp is None:
            return x  # nothing to do: no copy pass
        if self.layers == "fastgan":
            if b is not None and b.dtype != x.dtype:
                b = b.to(x.dtype)
            return bias_act(x, b, 1, self.act, self.alpha, self.gain, self.clamp)
        return stock_bias_act(x, b, self.act, self.alpha, self.gain, self.clamp)

    def _act_repr(self) -> str:
        return f", act={self.act}, layers={self.layers}"


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


class Conv2dAct(nn.Conv2d, _ActMixin):
    """``nn.Conv2d`` (same parameters) followed by bias + activation."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 act: str = "linear", alpha: float = 0.2, gain: float = 1.0, clamp: Optional[float] = None,
                 bias: bool = True, layers: str = "fastgan") -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride, padding, bias=bias)
        self._init_act(layers, act, alpha, gain, clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layers == "stock":
            return stock_bias_act(self._conv_forward(x, self.weight, self.bias), None, self.act, self.alpha, self.gain, self.clamp)
        w = self.weight
        if (x.is_cpu and x.dim() == 4 and x.requires_grad and self.groups == 1
                and tuple(self.dilation) == (1, 1) and self.padding_mode == "zeros"
                and not isinstance(self.padding, str) and x.dtype == w.dtype
                and w.shape[1] * w.shape[2] * w.shape[3] <= _THIN_IN_ROWS
                and not torch.is_autocast_enabled("cpu")):
            y = _ThinConv2d.apply(x, w, tuple(self.stride), tuple(self.padding))
        else:
            y = self._conv_forward(x, w, None)
        return self._bias_act(y, self.bias)

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


def _fast_conv_transpose2d(m: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """F.conv_transpose2d(x, m.weight) (no bias), with two CPU shortcuts where oneDNN is
    slow: a 1x1 input (DCGAN's first layer: z -> s0 x s0) is one matrix product, and a thin
    layer (see _THIN_ROWS) runs its forward as GEMM + col2im. Same results up to float
    rounding; everything else (and autocast) goes to F.conv_transpose2d."""
    w = m.weight
    if (x.is_cpu and x.dim() == 4 and m.groups == 1 and tuple(m.dilation) == (1, 1)
            and tuple(m.output_padding) == (0, 0) and x.dtype == w.dtype
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
    return F.conv_transpose2d(x, w, None, m.stride, m.padding, m.output_padding, m.groups, m.dilation)


class ConvTranspose2dAct(nn.ConvTranspose2d, _ActMixin):
    """``nn.ConvTranspose2d`` (same parameters) followed by bias + activation."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 act: str = "linear", alpha: float = 0.2, gain: float = 1.0, clamp: Optional[float] = None,
                 bias: bool = True, layers: str = "fastgan") -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride, padding, bias=bias)
        self._init_act(layers, act, alpha, gain, clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layers == "stock":
            y = F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                   self.groups, self.dilation)
            return stock_bias_act(y, None, self.act, self.alpha, self.gain, self.clamp)
        return self._bias_act(_fast_conv_transpose2d(self, x), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._act_repr()


class BatchNormAct(nn.BatchNorm2d, _ActMixin):
    """``nn.BatchNorm2d`` (same parameters and buffers) followed by an activation; the fused
    build folds the affine shift (``bias``) into the activation kernel."""

    def __init__(self, ch: int, act: str = "relu", alpha: float = 0.2, gain: float = 1.0,
                 clamp: Optional[float] = None, layers: str = "fastgan") -> None:
        super().__init__(ch)
        self._init_act(layers, act, alpha, gain, clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layers == "stock":
            return stock_bias_act(super().forward(x), None, self.act, self.alpha, self.gain, self.clamp)
        # nn.BatchNorm2d.forward's bookkeeping, then one fused op
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        return batch_norm_act(x, self.running_mean if keep else None, self.running_var if keep else None,
                              self.weight, self.bias, use_batch, factor, self.eps, self.act, self.alpha,
                              self.gain, self.clamp)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._act_repr()


class LinearAct(nn.Linear, _ActMixin):
    """``nn.Linear`` (same parameters) followed by bias + activation."""

    def __init__(self, in_f: int, out_f: int, act: str = "linear", alpha: float = 0.2, gain: float = 1.0,
                 clamp: Optional[float] = None, bias: bool = True, layers: str = "fastgan") -> None:
        super().__init__(in_f, out_f, bias=bias)
        self._init_act(layers, act, alpha, gain, clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layers == "stock":
            return stock_bias_act(F.linear(x, self.weight, self.bias), None, self.act, self.alpha, self.gain, self.clamp)
        return self._bias_act(F.linear(x, self.weight), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._act_repr()


# --- Equalized learning rate layers (ProGAN / StyleGAN2) -------------------------------------


class EqualLinear(nn.Module, _ActMixin):
    """Linear layer with weights ~ N(0, 1/lr_mul^2), scaled at run time by
    ``lr_mul / sqrt(in_f)`` (equalized learning rate); bias scaled by ``lr_mul``."""

    def __init__(self, in_f: int, out_f: int, act: str = "linear", lr_mul: float = 1.0, bias_init: float = 0.0,
                 gain: Optional[float] = None, clamp: Optional[float] = None, layers: str = "fastgan") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_f, in_f) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_f,), float(bias_init) / lr_mul))
        self.scale = lr_mul / math.sqrt(in_f)
        self.lr_mul = lr_mul
        if gain is None:
            gain = math.sqrt(2.0) if act in ("relu", "lrelu") else 1.0
        self._init_act(layers, act, 0.2, gain, clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.scale
        b = self.bias * self.lr_mul if self.lr_mul != 1.0 else self.bias
        if self.act == "linear" and self.clamp is None and self.gain == 1.0:
            return F.linear(x, w, b.to(x.dtype))  # addmm is already one fused call
        return self._bias_act(F.linear(x, w), b)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}" + self._act_repr()


def blur_kernel(taps=(1, 3, 3, 1)) -> torch.Tensor:
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[:, None] * k[None, :]
    return k / k.sum()


def blur(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int], gain: float = 1.0) -> torch.Tensor:
    """FIR filter with a separable 2-D kernel: pad, then depthwise conv2d (stock PyTorch)."""
    c = x.shape[1]
    k = (kernel * gain).to(x.dtype).flip([0, 1])[None, None].expand(c, 1, -1, -1)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, k, groups=c)


class EqualConv2d(nn.Module, _ActMixin):
    """Conv with equalized learning rate, optional FIR-filtered 2x down-sampling
    (blur then stride-2 conv) and bias + activation."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, act: str = "lrelu", down: bool = False,
                 bias: bool = True, clamp: Optional[float] = None, layers: str = "fastgan",
                 fir=(1, 3, 3, 1)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.down, self.k = down, kernel_size
        self.register_buffer("fir", blur_kernel(fir), persistent=False)
        self.register_buffer("fir_taps", setup_filter(list(fir), separable=True), persistent=False)
        self._init_act(layers, act, 0.2, math.sqrt(2.0) if act in ("relu", "lrelu") else 1.0, clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.scale
        if self.down and self.layers == "fastgan":
            # FIR in fastgan's upfirdn2d kernel (a 1x1 conv goes first: 4x fewer pixels)
            y = conv2d_resample(x, w, self.fir_taps.float(), down=2, padding=self.k // 2)
        elif self.down:
            p = (len(self.fir) - 2) + (self.k - 1)
            x = blur(x, self.fir, ((p + 1) // 2, p // 2))
            y = F.conv2d(x, w, stride=2)
        else:
            y = F.conv2d(x, w, padding=self.k // 2)
        return self._bias_act(y, self.bias) if (self.bias is not None or self.act != "linear") else y

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, k={self.k}, down={self.down}" + self._act_repr()


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalizes each feature vector (dim 1) to unit average square (ProGAN)."""
    return x * torch.rsqrt(x.float().square().mean(dim=1, keepdim=True).to(x.dtype) + eps)


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Appends one channel: the mean over features of the std over groups of samples."""
    n, c, h, w = x.shape
    g = min(group, n)
    if n % g:
        g = 1 if n % 2 else 2
    y = x.float().reshape(g, n // g, c, h, w)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt().mean((1, 2, 3))  # (n // g,)
    y = y.reshape(n // g, 1, 1, 1).repeat(g, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


def upsample2x_fir(x: torch.Tensor, kernel: torch.Tensor, taps: Optional[torch.Tensor] = None) -> torch.Tensor:
    """2x up-sampling: zero insertion, then the FIR filter (gain 4 keeps the mean). With
    ``taps`` (the 1-D filter of ``kernel``) it runs in fastgan's upfirdn2d kernel."""
    if taps is not None:
        return upsample2d(x, taps)
    n, c, h, w = x.shape
    y = x.new_zeros(n, c, h, 2, w, 2)
    y[:, :, :, 0, :, 0] = x
    y = y.reshape(n, c, 2 * h, 2 * w)
    p = kernel.shape[0] - 2
    return blur(y, kernel, ((p + 1) // 2 + 1, p // 2), gain=4.0)
