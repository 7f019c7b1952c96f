"""Image grids without torchvision: torch for the tiling, Pillow for the PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch


def generation_batch(resolution: int) -> int:
    """Images per generator call when sampling grids and metrics: 64 up to 128 px, then
    fewer (16 at 256, 4 at 512, 1 at 1024 px), so that generating a 64-image grid at a large
    resolution does not set a training run's peak memory."""
    return max(1, min(64, 2 ** 20 // (resolution * resolution)))


def make_grid(images: torch.Tensor, nrow: Optional[int] = None, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """(N, C, H, W) images in [-1, 1] -> one (C, H', W') tensor in [0, 1]; ``nrow`` images a row."""
    if images.dim() != 4:
        raise ValueError(f"images: expected (N, C, H, W), got shape {tuple(images.shape)}")
    x = ((images.detach().float().cpu() + 1) / 2).clamp(0, 1)
    n, c, h, w = x.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    grid = torch.full((c, ncol * (h + padding) + padding, nrow * (w + padding) + padding), pad_value)
    for i in range(n):
        r, k = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top:top + h, left:left + w] = x[i]
    return grid


def to_uint8_hwc(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) or (H, W, 3) uint8."""
    a = (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    return a[:, :, 0] if a.shape[2] == 1 else a


def save_image(img: torch.Tensor, path, scale: int = 1) -> Path:
    """Saves a (C, H, W) [0, 1] tensor as PNG (``scale``: nearest-neighbour enlargement)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(to_uint8_hwc(img))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    tmp = path.with_name(path.name + ".tmp")
    im.save(tmp, format="PNG")
    tmp.replace(path)
    return path


def save_grid(images: torch.Tensor, path, nrow: Optional[int] = None, scale: int = 1) -> Path:
    return save_image(make_grid(images, nrow), path, scale)
