"""A StyleGAN2-style generator and discriminator (Karras et al. 2020), 64 to 1024 px.

G: mapping network (pixel-normalized z -> 8 equalized-lr MLP layers with lr multiplier
0.01 -> w), a learned 4x4 constant, then per resolution two modulated 3x3 convolutions
with weight demodulation (the first up-samples 2x: transposed conv + FIR blur), per-pixel
noise with a learned strength, and a skip architecture summing up-sampled toRGB outputs.
D: residual blocks (two 3x3 convs, FIR down-sampling, 1x1 skip, / sqrt 2), minibatch
standard deviation, then a dense head.

Built from :mod:`fastgan.nn`. The fastgan kit: bias + activation (+ clamp) in the fused
``bias_act`` kernel, every FIR up/down-sampling in fastgan's kernels (the D's strided
convolutions through ``downsample_conv2d``), and the modulated convolutions with the style
moved onto the activations (``modconv='batched'``: one convolution with the shared weight
over the whole batch, as StyleGAN2-ADA trains). G's up-sampling convolution keeps the
transposed convolution + ``upfirdn2d`` form rather than ``upsample_conv2d``: the per-pixel
noise and the demodulation sit between the FIR filter and the bias + activation, so the
fused epilogue cannot take them (and fusing them would gain little on CPU: without that
whole epilogue, G's forward + backward at 64 px is ~10% faster, ~3% of a training step, whose
time goes over 80% to convolutions; ``bench/modconv_ab.py epilogue`` and ``profile``). G's modulated
convolutions do not save ``x * style`` for backward on large inputs (see ModulatedConv2d). Under ``fastgan.use_layers("stock")``: the textbook
composition (FIR by pad + depthwise conv2d, conv bias, ``F.leaky_relu``, gain) and
per-sample modulated weights in one grouped convolution (``modconv='grouped'``, as
rosinality's port). ``modconv`` overrides that choice for either kit; all combinations
compute the same function with the same parameters. On CPU the fastgan kit also runs its
activations in channels_last (from the first up-sampling convolution in G, from the input
in D), where oneDNN's strided and transposed convolutions and fastgan's FIR kernels are
fastest; G's images leave in the layout of G's own parameters (NCHW unless the model was
moved to channels_last).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from torch.utils.checkpoint import checkpoint as _checkpoint
from torch.utils.checkpoint import set_checkpoint_early_stop

from ..nn import (EqualConv2d, EqualLinear, activation_checkpointing_allowed, ModulatedConv2d, Upsample, memory_format_of, minibatch_stddev,
                  pixel_norm, stock_layers)


def _channels(res: int, base_ch: int, max_ch: int) -> int:
    return max(1, min(base_ch // res, max_ch))


LOW_PRECISION_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _low_precision(low_precision_res: int, low_precision: str, log2: int) -> tuple[int, torch.dtype]:
    """The lowest resolution that runs in ``low_precision`` (StyleGAN2-ADA's num_fp16_res:
    the ``low_precision_res`` highest resolutions, never below 8 px) and its dtype."""
    if not isinstance(low_precision_res, int) or isinstance(low_precision_res, bool) or low_precision_res < 0:
        raise ValueError(f"low_precision_res: expected an int >= 0, got {low_precision_res!r}")
    if low_precision not in LOW_PRECISION_DTYPES:
        raise ValueError(f"low_precision: expected one of {', '.join(LOW_PRECISION_DTYPES)}, got {low_precision!r}")
    if low_precision_res == 0:
        return 2 ** (log2 + 1), torch.float32
    return max(2 ** (log2 + 1 - low_precision_res), 8), LOW_PRECISION_DTYPES[low_precision]


def _run(fn, *args, checkpointed: bool):
    """``fn(*args)``, under activation checkpointing when asked and gradients are on:
    non-reentrant (double backward works through it), with the RNG state restored for the
    recomputation (the same noise). Not inside ``fastgan.nn.no_activation_checkpointing()``,
    which the input-gradient penalties enter: under their double backward it saves nothing."""
    if checkpointed and torch.is_grad_enabled() and activation_checkpointing_allowed():
        # Early stop (the default) aborts the recomputation with an exception once every
        # needed tensor is back; thrown while a C++ autograd function (fastgan's ops) saves
        # its tensors, it leaks that function's output (a reference cycle in C++: measured
        # +280 MiB per G step at 256 px). Recompute whole blocks instead.
        with set_checkpoint_early_stop(False):
            return _checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def _check_res(resolution: int, low: int = 8) -> int:
    log2 = int(round(math.log2(resolution))) if resolution > 0 else 0
    if resolution < low or 2 ** log2 != resolution or resolution > 1024:
        raise ValueError(f"resolution: expected a power of two from {low} to 1024, got {resolution}")
    return log2


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, w_dim: int, n_layers: int = 8, lr_mul: float = 0.01) -> None:
        super().__init__()
        dims = [z_dim] + [w_dim] * n_layers
        self.net = nn.ModuleList(EqualLinear(a, b, lr_multiplier=lr_mul, activation="lrelu") for a, b in zip(dims[:-1], dims[1:]))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation: float = 1.0, update_avg: bool = False) -> torch.Tensor:
        w = pixel_norm(z)
        for layer in self.net:
            w = layer(w)
        if update_avg:
            self.update_avg(w.detach().mean(0))
        if truncation != 1.0:
            w = self.w_avg.to(w.dtype).lerp(w, truncation)
        return w


    @torch.no_grad()
    def update_avg(self, w_mean: torch.Tensor) -> None:
        """Moves the tracked average w (truncation's centre) towards ``w_mean``, one batch's
        mean w (a caller that maps a batch in pieces updates once, with the whole mean)."""
        self.w_avg.lerp_(w_mean.detach().to(self.w_avg.dtype), 0.005)


def mix_styles(w1: torch.Tensor, w2: torch.Tensor, cutoff, num_ws: int) -> torch.Tensor:
    """Style mixing: ``(N, num_ws, w_dim)`` styles taking ``w1`` for the layers below
    ``cutoff`` and ``w2`` from ``cutoff`` on. ``w1``, ``w2``: ``(N, w_dim)`` or
    ``(N, num_ws, w_dim)``; ``cutoff``: an int or one per sample (``(N,)`` integers);
    ``cutoff >= num_ws`` keeps ``w1`` everywhere (no mixing). How often to mix, and where,
    is the trainer's policy."""
    def full(w):
        return w[:, None].expand(-1, num_ws, -1) if w.dim() == 2 else w
    w1, w2 = full(w1), full(w2)
    if w1.shape != w2.shape or w1.shape[1] != num_ws:
        raise ValueError(f"mix_styles: w1 {tuple(w1.shape)} and w2 {tuple(w2.shape)} must both be (N, {num_ws}, w_dim)")
    layer = torch.arange(num_ws, device=w1.device)
    cutoff = torch.as_tensor(cutoff, device=w1.device).reshape(-1, 1)  # (N or 1, 1)
    return torch.where((layer[None] >= cutoff)[:, :, None], w2, w1)


class StyleGAN2Generator(nn.Module):
    def __init__(self, z_dim: int = 512, resolution: int = 256, img_channels: int = 3, base_ch: int = 16384,
                 max_ch: int = 512, w_dim: Optional[int] = None, n_mlp: int = 8,
                 clamp: Optional[float] = None, modconv: str = "auto", checkpoint: bool = False,
                 low_precision_res: int = 0, low_precision: str = "fp16") -> None:
        super().__init__()
        log2 = _check_res(resolution)
        self.z_dim, self.w_dim, self.resolution = z_dim, w_dim or z_dim, resolution
        self.checkpoint = bool(checkpoint)
        self.low_res, self.low_dtype = _low_precision(low_precision_res, low_precision, log2)
        # one w per modulated layer: conv4, rgb4, then (conv0, conv1, toRGB) per block, the
        # toRGB sharing the next block's first index (StyleGAN2-ADA's num_ws)
        self.num_ws = 2 * (log2 - 1)
        self.mapping = MappingNetwork(z_dim, self.w_dim, n_mlp)
        c4 = _channels(4, base_ch, max_ch)
        self.const = nn.Parameter(torch.randn(1, c4, 4, 4))
        self.conv4 = ModulatedConv2d(c4, c4, 3, self.w_dim, clamp=clamp, modconv=modconv)
        self.rgb4 = ModulatedConv2d(c4, img_channels, 1, self.w_dim, demod=False, act="linear", noise=False, clamp=clamp, modconv=modconv)
        self.blocks = nn.ModuleList()
        self.rgbs = nn.ModuleList()
        for r in range(3, log2 + 1):
            cin, cout = _channels(2 ** (r - 1), base_ch, max_ch), _channels(2 ** r, base_ch, max_ch)
            self.blocks.append(nn.ModuleList([
                ModulatedConv2d(cin, cout, 3, self.w_dim, up=True, clamp=clamp, modconv=modconv),
                ModulatedConv2d(cout, cout, 3, self.w_dim, clamp=clamp, modconv=modconv)]))
            self.rgbs.append(ModulatedConv2d(cout, img_channels, 1, self.w_dim, demod=False, act="linear", noise=False, clamp=clamp, modconv=modconv))
        self.upsample = Upsample(2)  # the skip's toRGB sum: FIR [1, 3, 3, 1], gain 4

    def forward(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation, update_avg=self.training))

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """Images from ``ws``: ``(N, num_ws, w_dim)``, one w per modulated layer (style
        mixing, path-length regularization), or ``(N, w_dim)``, the same w for all."""
        if ws.dim() == 2:
            ws = ws[:, None].expand(-1, self.num_ws, -1)
        if ws.dim() != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws: expected (N, {self.num_ws}, {self.w_dim}) or (N, {self.w_dim}), got {tuple(ws.shape)}")
        x = self.const.to(ws.dtype).expand(ws.shape[0], -1, -1, -1)
        x = self.conv4(x, ws[:, 0])
        img = self.rgb4(x, ws[:, 1])
        for i in range(len(self.blocks)):
            x, img = _run(self._block, i, x, img, ws, checkpointed=self.checkpoint)
        if img.is_cpu and not stock_layers():
            # the fastgan kit runs in channels_last on CPU (see ModulatedConv2d); the images
            # leave in the layout of the model's own parameters
            img = img.contiguous(memory_format=memory_format_of(self.const))
        return img

    def _block(self, i: int, x: torch.Tensor, img: torch.Tensor, ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (c0, c1), rgb = self.blocks[i], self.rgbs[i]
        res = 2 ** (i + 3)
        dtype = self.low_dtype if res >= self.low_res else ws.dtype
        # a reduced-precision block: activations in low precision; styles and demodulation
        # in the outer precision, cast per layer; the toRGB sum (the image) stays outer
        x = c1(c0(x.to(dtype), ws[:, 1 + 2 * i]), ws[:, 2 + 2 * i])
        return x, self.upsample(img) + rgb(x, ws[:, 3 + 2 * i]).to(img.dtype)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, clamp: Optional[float]) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(cin, cin, 3, padding=1, act="lrelu", clamp=clamp)
        self.conv1 = EqualConv2d(cin, cout, 3, padding=1, act="lrelu", clamp=clamp, down=2)
        self.skip = EqualConv2d(cin, cout, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = 1 / math.sqrt(2)
        if stock_layers():
            return (self.skip(x) + self.conv1(self.conv0(x))) * k
        # the residual's 1/sqrt(2) folded into the two branches: conv1's gain and clamp
        # (clamp(v * g, c) * k == clamp(v * g * k, c * k) for k > 0) and skip's weight
        return self.skip(x, k) + self.conv1(self.conv0(x), k)


class StyleGAN2Discriminator(nn.Module):
    def __init__(self, resolution: int = 256, img_channels: int = 3, base_ch: int = 16384, max_ch: int = 512,
                 clamp: Optional[float] = None, checkpoint: bool = False, low_precision_res: int = 0,
                 low_precision: str = "fp16") -> None:
        super().__init__()
        log2 = _check_res(resolution)
        self.resolution = resolution
        self.checkpoint = bool(checkpoint)
        self.low_res, self.low_dtype = _low_precision(low_precision_res, low_precision, log2)
        self.from_rgb = EqualConv2d(img_channels, _channels(resolution, base_ch, max_ch), 1, act="lrelu", clamp=clamp)
        self.blocks = nn.Sequential(*[
            ResBlock(_channels(2 ** r, base_ch, max_ch), _channels(2 ** (r - 1), base_ch, max_ch), clamp)
            for r in range(log2, 2, -1)])
        c4 = _channels(4, base_ch, max_ch)
        self.conv = EqualConv2d(c4 + 1, c4, 3, padding=1, act="lrelu", clamp=clamp)
        self.fc = EqualLinear(c4 * 16, c4, activation="lrelu")
        self.out = EqualLinear(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.is_cpu and not stock_layers():
            img = img.contiguous(memory_format=torch.channels_last)  # see StyleGAN2Generator
        dtype = img.dtype
        x = self.from_rgb(img.to(self.low_dtype) if self.resolution >= self.low_res else img)
        for i, block in enumerate(self.blocks):
            res = self.resolution >> i
            x = _run(block, x.to(self.low_dtype if res >= self.low_res else dtype), checkpointed=self.checkpoint)
        x = self.conv(minibatch_stddev(x.to(dtype)))
        return self.out(self.fc(x.flatten(1))).squeeze(1)
