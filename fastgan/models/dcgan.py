"""DCGAN (Radford et al. 2016) and its class-conditional variant, at 28, 32 or 64 px.

Generator: z -> transposed conv to a ``s0 x s0`` map (s0 = 7 at 28 px, else 4) -> stride-2
transposed convs (batch norm + ReLU) doubling the resolution -> tanh image. Discriminator:
the mirror (stride-2 convs, leaky ReLU 0.2, batch norm after the first layer unless
``d_norm='none'``, which WGAN-GP needs) -> one logit per image from a ``s0 x s0`` conv.

Conditional models (``num_classes > 0``): G concatenates a learned class embedding to z;
D is a projection discriminator (Miyato & Koyama 2018): ``logit = f(h) + <embed(y), sum_hw h>``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..nn import BatchNormAct, Conv2dAct, ConvTranspose2dAct, memory_format_of, stock_layers

RESOLUTIONS = (28, 32, 64)


def _plan(resolution: int, base_ch: int, max_ch: int) -> tuple[int, list[int]]:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution: DCGAN supports {', '.join(map(str, RESOLUTIONS))} px, got {resolution}")
    s0 = 7 if resolution == 28 else 4
    n_up = int(round(math.log2(resolution // s0)))
    # channels of the feature maps at s0, 2*s0, ..., resolution/2
    chans = [min(base_ch * 2 ** (n_up - 1 - i), max_ch) for i in range(n_up)]
    return s0, chans


def _init_dcgan(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 1.0)


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int = 100, resolution: int = 32, img_channels: int = 1, base_ch: int = 64,
                 max_ch: int = 512, num_classes: int = 0, embed_dim: int = 50,
                 clamp: Optional[float] = None) -> None:
        super().__init__()
        self.z_dim, self.resolution, self.img_channels, self.num_classes = z_dim, resolution, img_channels, num_classes
        s0, chans = _plan(resolution, base_ch, max_ch)
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes > 0 else None
        in_dim = z_dim + (embed_dim if num_classes > 0 else 0)
        blocks: list[nn.Module] = [
            ConvTranspose2dAct(in_dim, chans[0], s0, 1, 0, bias=False, act="linear"),
            BatchNormAct(chans[0], "relu", clamp=clamp),
        ]
        for cin, cout in zip(chans[:-1], chans[1:]):
            blocks += [ConvTranspose2dAct(cin, cout, 4, 2, 1, bias=False, act="linear"),
                       BatchNormAct(cout, "relu", clamp=clamp)]
        blocks.append(ConvTranspose2dAct(chans[-1], img_channels, 4, 2, 1, act="tanh"))
        self.net = nn.Sequential(*blocks)
        _init_dcgan(self)

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.embed is not None:
            if labels is None:
                raise ValueError("labels: a conditional generator needs class labels")
            z = torch.cat([z, self.embed(labels).to(z.dtype)], dim=1)
        x = z.reshape(z.shape[0], -1, 1, 1)
        if stock_layers() or not z.is_cpu:
            return self.net(x)
        # The fastgan kit on CPU: feature maps in channels_last (oneDNN's strided
        # convolutions are faster so), the image returned in the layout of G's parameters.
        out_format = memory_format_of(self.net[2].weight)
        x = self.net[1](self.net[0](x)).contiguous(memory_format=torch.channels_last)
        for layer in self.net[2:]:
            x = layer(x)
        return x.contiguous(memory_format=out_format)


class DCGANDiscriminator(nn.Module):
    def __init__(self, resolution: int = 32, img_channels: int = 1, base_ch: int = 64, max_ch: int = 512,
                 num_classes: int = 0, norm: str = "batch",
                 clamp: Optional[float] = None) -> None:
        super().__init__()
        if norm not in ("batch", "none"):
            raise ValueError(f"norm: expected 'batch' or 'none', got {norm!r}")
        self.resolution, self.num_classes = resolution, num_classes
        s0, chans = _plan(resolution, base_ch, max_ch)
        chans = chans[::-1]  # resolution/2 ... s0
        blocks: list[nn.Module] = [Conv2dAct(img_channels, chans[0], 4, 2, 1, act="lrelu", clamp=clamp)]
        for cin, cout in zip(chans[:-1], chans[1:]):
            if norm == "batch":
                blocks += [Conv2dAct(cin, cout, 4, 2, 1, bias=False),
                           BatchNormAct(cout, "lrelu", clamp=clamp)]
            else:
                blocks.append(Conv2dAct(cin, cout, 4, 2, 1, act="lrelu", clamp=clamp))
        self.features = nn.Sequential(*blocks)
        self.out = Conv2dAct(chans[-1], 1, s0, 1, 0)
        self.embed = nn.Embedding(num_classes, chans[-1]) if num_classes > 0 else None
        _init_dcgan(self)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        # The fastgan kit on CPU: activations in channels_last when D's parameters are (see
        # DCGANGenerator). With NCHW parameters, converting the activations alone measured
        # slower (28 px DCGAN step ~1-2%, 64 px WGAN-GP critic step ~4%, interleaved runs).
        if x.is_cpu and memory_format_of(self.out.weight) == torch.channels_last and not stock_layers():
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.features(x)
        logit = self.out(h).flatten(1).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("labels: a conditional discriminator needs class labels")
            logit = logit + (self.embed(labels).to(h.dtype) * h.sum((2, 3))).sum(1)
        return logit
