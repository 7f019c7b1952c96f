"""Progressive growing GAN (Karras et al. 2018): equalized learning rate, pixel norm,
minibatch standard deviation, and resolution doubling by stages with a linear fade-in.

The schedule is a pure function of the images seen (``set_progress(kimg, phase_kimg)``):
4x4 for ``phase_kimg``, then for every doubling a fade-in phase and a stable phase of
``phase_kimg`` each, so a resumed run lands on the same stage and alpha. G always returns
full-resolution images (the current stage up-sampled, nearest); D average-pools its input to
the current stage, which inverts that exactly and down-samples the reals alike.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import EqualConv2d, EqualLinear, minibatch_stddev, pixel_norm


def _ch(res: int, base_ch: int, max_ch: int) -> int:
    return max(1, min(base_ch * 16 // res, max_ch))  # base_ch: channels at 16 px


def _schedule(kimg: float, phase_kimg: float, n_stages: int) -> tuple[int, float]:
    if phase_kimg <= 0 or math.isinf(kimg):
        return n_stages - 1, 1.0
    t = kimg / phase_kimg
    stage = min(n_stages - 1, int((t + 1) // 2))
    alpha = 1.0 if stage == 0 else min(1.0, max(0.0, t - (2 * stage - 1)))
    if stage == n_stages - 1 and t >= 2 * stage:
        alpha = 1.0
    return stage, alpha


class _Progressive(nn.Module):
    def _init_schedule(self, resolution: int) -> int:
        log2 = int(round(math.log2(resolution))) if resolution > 0 else 0
        if resolution < 8 or 2 ** log2 != resolution or resolution > 1024:
            raise ValueError(f"resolution: expected a power of two from 8 to 1024, got {resolution}")
        self.n_stages = log2 - 1
        self.stage, self.alpha = self.n_stages - 1, 1.0
        return log2

    def set_progress(self, kimg: float, phase_kimg: float) -> None:
        self.stage, self.alpha = _schedule(kimg, phase_kimg, self.n_stages)


class ProGANGenerator(_Progressive):
    def __init__(self, z_dim: int = 256, resolution: int = 64, img_channels: int = 3, base_ch: int = 256,
                 max_ch: int = 256) -> None:
        super().__init__()
        log2 = self._init_schedule(resolution)
        self.z_dim, self.resolution = z_dim, resolution
        c4 = _ch(4, base_ch, max_ch)
        self.fc = EqualLinear(z_dim, c4 * 16, activation="lrelu", gain=math.sqrt(2) / 4)
        self.c4 = c4
        self.conv4 = EqualConv2d(c4, c4, 3, padding=1, act="lrelu")
        self.blocks = nn.ModuleList()
        self.to_rgb = nn.ModuleList([EqualConv2d(c4, img_channels, 1)])
        for r in range(3, log2 + 1):
            cin, cout = _ch(2 ** (r - 1), base_ch, max_ch), _ch(2 ** r, base_ch, max_ch)
            self.blocks.append(nn.ModuleList([
                # nearest-neighbour 2x, then the conv: one fused block (a stride-2 transposed
                # conv, then the 2x2 box filter + bias + activation in one pass)
                EqualConv2d(cin, cout, 3, padding=1, act="lrelu", up=2, filter=(1, 1)),
                EqualConv2d(cout, cout, 3, padding=1, act="lrelu")]))
            self.to_rgb.append(EqualConv2d(cout, img_channels, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(self.fc(pixel_norm(z)).reshape(z.shape[0], self.c4, 4, 4))
        x = pixel_norm(self.conv4(x))
        prev = None
        for s in range(1, self.stage + 1):
            prev = x
            c0, c1 = self.blocks[s - 1]
            x = pixel_norm(c1(pixel_norm(c0(x))))
        img = self.to_rgb[self.stage](x)
        if self.stage > 0 and self.alpha < 1.0:
            low = F.interpolate(self.to_rgb[self.stage - 1](prev), scale_factor=2, mode="nearest")
            img = torch.lerp(low, img, self.alpha)
        factor = self.resolution // img.shape[-1]
        return F.interpolate(img, scale_factor=factor, mode="nearest") if factor > 1 else img


class ProGANDiscriminator(_Progressive):
    def __init__(self, resolution: int = 64, img_channels: int = 3, base_ch: int = 256, max_ch: int = 256) -> None:
        super().__init__()
        log2 = self._init_schedule(resolution)
        self.resolution = resolution
        c4 = _ch(4, base_ch, max_ch)
        self.from_rgb = nn.ModuleList([EqualConv2d(img_channels, c4, 1, act="lrelu")])
        self.blocks = nn.ModuleList()
        for r in range(3, log2 + 1):
            cin, cout = _ch(2 ** r, base_ch, max_ch), _ch(2 ** (r - 1), base_ch, max_ch)
            self.from_rgb.append(EqualConv2d(img_channels, cin, 1, act="lrelu"))
            self.blocks.append(nn.ModuleList([EqualConv2d(cin, cin, 3, padding=1, act="lrelu"), EqualConv2d(cin, cout, 3, padding=1, act="lrelu")]))
        self.conv = EqualConv2d(c4 + 1, c4, 3, padding=1, act="lrelu")
        self.fc = EqualLinear(c4 * 16, c4, activation="lrelu")
        self.out = EqualLinear(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        s = self.stage
        x_img = F.avg_pool2d(img, self.resolution // (4 * 2 ** s)) if self.resolution > 4 * 2 ** s else img
        x = self.from_rgb[s](x_img)
        for k in range(s, 0, -1):
            c0, c1 = self.blocks[k - 1]
            x = F.avg_pool2d(c1(c0(x)), 2)
            if k == s and self.alpha < 1.0:
                x = torch.lerp(self.from_rgb[s - 1](F.avg_pool2d(x_img, 2)), x, self.alpha)
        x = self.conv(minibatch_stddev(x))
        return self.out(self.fc(x.flatten(1))).squeeze(1)
