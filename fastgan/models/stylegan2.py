"""A StyleGAN2-style generator and discriminator (Karras et al. 2020), 64 to 1024 px.

G: mapping network (pixel-normalized z -> 8 equalized-lr MLP layers with lr multiplier
0.01 -> w), a learned 4x4 constant, then per resolution two modulated 3x3 convolutions
with weight demodulation (the first up-samples 2x: transposed conv + FIR blur), per-pixel
noise with a learned strength, and a skip architecture summing up-sampled toRGB outputs.
D: residual blocks (two 3x3 convs, FIR down-sampling, 1x1 skip, / sqrt 2), minibatch
standard deviation, then a dense head.

Built from :mod:`fastgan.models.layers`. ``layers='fastgan'``: bias + activation (+ clamp)
in the fused ``bias_act`` kernel, every FIR up/down-sampling in the ``upfirdn2d`` kernel
(separable [1, 3, 3, 1]), and the modulated convolutions with the style moved onto the
activations (``modconv='batched'``: one convolution with the shared weight over the whole
batch, as StyleGAN2-ADA trains). ``layers='stock'``: the textbook composition (pad +
depthwise conv2d blur, conv bias, ``F.leaky_relu``, gain) and per-sample modulated weights
in one grouped convolution (``modconv='grouped'``, as rosinality's port). ``modconv``
overrides that choice for either kit; all combinations compute the same function with the
same parameters. On CPU the fastgan kit also runs its activations in channels_last (from
the first up-sampling convolution in G, from the input in D), where oneDNN's strided and
transposed convolutions and fastgan's FIR kernels are fastest; G's images leave in the
layout of G's own parameters (NCHW unless the model was moved to channels_last).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._backend import memory_format_of
from ..ops.conv2d_resample import conv2d_resample
from ..ops.upfirdn2d import setup_filter
from .layers import EqualConv2d, EqualLinear, _ActMixin, blur, blur_kernel, check_layers, minibatch_stddev, pixel_norm, upsample2x_fir


MODCONV_MODES = ("auto", "batched", "grouped")


def _channels(res: int, base_ch: int, max_ch: int) -> int:
    return max(1, min(base_ch // res, max_ch))


def _check_res(resolution: int, low: int = 8) -> int:
    log2 = int(round(math.log2(resolution))) if resolution > 0 else 0
    if resolution < low or 2 ** log2 != resolution or resolution > 1024:
        raise ValueError(f"resolution: expected a power of two from {low} to 1024, got {resolution}")
    return log2


class ModulatedConv2d(nn.Module, _ActMixin):
    """Modulated 3x3 (or 1x1) convolution with optional demodulation and 2x up-sampling,
    run as one grouped convolution over the batch; then noise, bias and activation."""

    def __init__(self, in_ch: int, out_ch: int, k: int, w_dim: int, demod: bool = True, up: bool = False,
                 act: str = "lrelu", noise: bool = True, clamp: Optional[float] = None, layers: str = "fastgan",
                 modconv: str = "auto") -> None:
        super().__init__()
        if modconv not in MODCONV_MODES:
            raise ValueError(f"modconv: expected one of {', '.join(MODCONV_MODES)}, got {modconv!r}")
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, k, k))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0, layers=layers)
        self.noise_strength = nn.Parameter(torch.zeros([])) if noise else None
        self.scale = 1 / math.sqrt(in_ch * k * k)
        self.in_ch, self.out_ch, self.k, self.demod, self.up = in_ch, out_ch, k, demod, up
        self.modconv = ("batched" if layers == "fastgan" else "grouped") if modconv == "auto" else modconv
        self.register_buffer("fir", blur_kernel(), persistent=False)
        self.register_buffer("fir_taps", setup_filter([1, 3, 3, 1], separable=True), persistent=False)
        gain = math.sqrt(2.0) if act == "lrelu" else 1.0
        self._init_act(layers, act, 0.2, gain, clamp)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.affine(w)  # (n, in)
        if self.modconv == "batched":
            y = self._modulate_activations(x, style)
        else:
            y = self._modulate_weights(x, style)
        return self._bias_act(y, self.bias)

    def _noise(self, y: torch.Tensor) -> Optional[torch.Tensor]:
        if self.noise_strength is None:
            return None
        n, _, h, w = y.shape
        return torch.randn(n, 1, h, w, device=y.device, dtype=y.dtype) * self.noise_strength.to(y.dtype)

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
            y = y.reshape(n, self.out_ch, *y.shape[2:])
            y = blur(y, self.fir, (1, 1), gain=4.0)
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

    def _modulate_activations(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """The same function with the style moved onto the activations: scale the input
        channels by the style, run ONE convolution with the shared weight over the whole
        batch, then scale the output channels by the demodulation coefficients (computed
        from the weight's per-(out, in) energy: a small matrix product). The FIR
        up-sampling runs in fastgan's upfirdn2d kernel and the noise + demodulation in one
        ``addcmul``."""
        weight = self.weight * self.scale
        xs = x * style.to(x.dtype)[:, :, None, None]
        wx = weight.to(x.dtype)
        if self.up and self.layers == "fastgan":
            if xs.is_cpu:
                # oneDNN's stride-2 transposed convolution is ~3x faster in channels_last
                # (and upfirdn2d ~2x): the rest of G then runs in that layout
                xs = xs.contiguous(memory_format=torch.channels_last)
                wx = wx.contiguous(memory_format=torch.channels_last)
            y = conv2d_resample(xs, wx, self.fir_taps.float(), up=2, padding=self.k // 2, flip_weight=False)
        elif self.up:
            y = blur(F.conv_transpose2d(xs, wx.transpose(0, 1), stride=2), self.fir, (1, 1), gain=4.0)
        else:
            y = F.conv2d(xs, wx, padding=self.k // 2)
        noise = self._noise(y)
        if self.demod:
            d = torch.rsqrt(style.square() @ weight.square().sum((2, 3)).t() + 1e-8).to(y.dtype)  # (n, out)
            d = d[:, :, None, None]
            return y * d if noise is None else torch.addcmul(noise, y, d)
        return y if noise is None else y + noise


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, w_dim: int, n_layers: int = 8, lr_mul: float = 0.01, layers: str = "fastgan") -> None:
        super().__init__()
        dims = [z_dim] + [w_dim] * n_layers
        self.net = nn.ModuleList(EqualLinear(a, b, act="lrelu", lr_mul=lr_mul, layers=layers) for a, b in zip(dims[:-1], dims[1:]))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation: float = 1.0, update_avg: bool = False) -> torch.Tensor:
        w = pixel_norm(z)
        for layer in self.net:
            w = layer(w)
        if update_avg:
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().to(self.w_avg.dtype).mean(0), 0.005)
        if truncation != 1.0:
            w = self.w_avg.to(w.dtype).lerp(w, truncation)
        return w


class StyleGAN2Generator(nn.Module):
    def __init__(self, z_dim: int = 512, resolution: int = 256, img_channels: int = 3, base_ch: int = 16384,
                 max_ch: int = 512, w_dim: Optional[int] = None, n_mlp: int = 8, layers: str = "fastgan",
                 clamp: Optional[float] = None, modconv: str = "auto") -> None:
        super().__init__()
        check_layers(layers)
        log2 = _check_res(resolution)
        self.z_dim, self.w_dim, self.resolution = z_dim, w_dim or z_dim, resolution
        self.mapping = MappingNetwork(z_dim, self.w_dim, n_mlp, layers=layers)
        c4 = _channels(4, base_ch, max_ch)
        self.const = nn.Parameter(torch.randn(1, c4, 4, 4))
        self.conv4 = ModulatedConv2d(c4, c4, 3, self.w_dim, clamp=clamp, layers=layers, modconv=modconv)
        self.rgb4 = ModulatedConv2d(c4, img_channels, 1, self.w_dim, demod=False, act="linear", noise=False, clamp=clamp, layers=layers, modconv=modconv)
        self.blocks = nn.ModuleList()
        self.rgbs = nn.ModuleList()
        for r in range(3, log2 + 1):
            cin, cout = _channels(2 ** (r - 1), base_ch, max_ch), _channels(2 ** r, base_ch, max_ch)
            self.blocks.append(nn.ModuleList([
                ModulatedConv2d(cin, cout, 3, self.w_dim, up=True, clamp=clamp, layers=layers, modconv=modconv),
                ModulatedConv2d(cout, cout, 3, self.w_dim, clamp=clamp, layers=layers, modconv=modconv)]))
            self.rgbs.append(ModulatedConv2d(cout, img_channels, 1, self.w_dim, demod=False, act="linear", noise=False, clamp=clamp, layers=layers, modconv=modconv))
        self.register_buffer("fir", blur_kernel(), persistent=False)
        self.register_buffer("fir_taps", setup_filter([1, 3, 3, 1], separable=True), persistent=False)
        self.layers = layers

    def forward(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        w = self.mapping(z, truncation, update_avg=self.training)
        x = self.const.to(w.dtype).expand(z.shape[0], -1, -1, -1)
        x = self.conv4(x, w)
        img = self.rgb4(x, w)
        for (c0, c1), rgb in zip(self.blocks, self.rgbs):
            x = c1(c0(x, w), w)
            img = upsample2x_fir(img, self.fir, self.fir_taps.float() if self.layers == "fastgan" else None) + rgb(x, w)
        if img.is_cpu and self.layers == "fastgan":
            # the fastgan kit runs in channels_last on CPU (see ModulatedConv2d); the images
            # leave in the layout of the model's own parameters
            img = img.contiguous(memory_format=memory_format_of(self.const))
        return img


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, clamp: Optional[float], layers: str) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(cin, cin, 3, clamp=clamp, layers=layers)
        self.conv1 = EqualConv2d(cin, cout, 3, down=True, clamp=clamp, layers=layers)
        self.skip = EqualConv2d(cin, cout, 1, act="linear", down=True, bias=False, layers=layers)
        self.fold = layers == "fastgan"
        if self.fold:
            # the residual's 1/sqrt(2) folded into the two branches: conv1's gain and clamp
            # (clamp(v * g, c) * k == clamp(v * g * k, c * k) for k > 0) and skip's weight scale
            k = 1 / math.sqrt(2)
            self.conv1.gain *= k
            self.conv1.clamp = None if clamp is None else clamp * k
            self.skip.scale *= k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fold:
            return self.skip(x) + self.conv1(self.conv0(x))
        return (self.skip(x) + self.conv1(self.conv0(x))) * (1 / math.sqrt(2))


class StyleGAN2Discriminator(nn.Module):
    def __init__(self, resolution: int = 256, img_channels: int = 3, base_ch: int = 16384, max_ch: int = 512,
                 layers: str = "fastgan", clamp: Optional[float] = None) -> None:
        super().__init__()
        check_layers(layers)
        log2 = _check_res(resolution)
        self.resolution = resolution
        self.cpu_channels_last = layers == "fastgan"
        self.from_rgb = EqualConv2d(img_channels, _channels(resolution, base_ch, max_ch), 1, clamp=clamp, layers=layers)
        self.blocks = nn.Sequential(*[
            ResBlock(_channels(2 ** r, base_ch, max_ch), _channels(2 ** (r - 1), base_ch, max_ch), clamp, layers)
            for r in range(log2, 2, -1)])
        c4 = _channels(4, base_ch, max_ch)
        self.conv = EqualConv2d(c4 + 1, c4, 3, clamp=clamp, layers=layers)
        self.fc = EqualLinear(c4 * 16, c4, act="lrelu", layers=layers)
        self.out = EqualLinear(c4, 1, layers=layers)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.cpu_channels_last and img.is_cpu:
            img = img.contiguous(memory_format=torch.channels_last)  # see StyleGAN2Generator
        x = self.blocks(self.from_rgb(img))
        x = self.conv(minibatch_stddev(x))
        return self.out(self.fc(x.flatten(1))).squeeze(1)
