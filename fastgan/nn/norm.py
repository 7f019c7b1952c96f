"""Normalization modules: batch norm with a fused activation, and ProGAN's pixel norm and
minibatch standard deviation."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .._backend import stock_layers
from ..ops.batch_norm_act import batch_norm_act
from .bias_act import _ActTail

__all__ = ["BatchNormAct", "MinibatchStdDev", "PixelNorm", "minibatch_stddev", "pixel_norm"]


class BatchNormAct(nn.BatchNorm2d, _ActTail):
    """``nn.BatchNorm2d`` (a subclass: same parameters, buffers and state dict) followed by
    an activation. The fastgan kit runs normalization, affine transform and activation as
    one :func:`fastgan.ops.batch_norm_act` call; under ``use_layers("stock")``,
    ``nn.BatchNorm2d`` then stock ops. ``gain`` defaults to 1 (a plain activation) and
    ``alpha`` to 0.2, also when passed None (batch_norm_act's contract)."""

    def __init__(self, num_features: int, act: str = "relu", alpha: Optional[float] = 0.2,
                 gain: Optional[float] = 1.0, clamp: Optional[float] = None, *, eps: float = 1e-5,
                 momentum: Optional[float] = 0.1, affine: bool = True, track_running_stats: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        # batch_norm_act's defaults (gain 1, alpha 0.2 for every act), resolved here so that
        # both kits compute the same function
        self._init_act(act, 0.2 if alpha is None else alpha, 1.0 if gain is None else gain, clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if stock_layers():
            return self._tail(super().forward(x), None)
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


class PixelNorm(nn.Module):
    """:func:`pixel_norm` as a module."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(x, self.eps)


class MinibatchStdDev(nn.Module):
    """:func:`minibatch_stddev` as a module: [N, C, H, W] -> [N, C + 1, H, W]."""

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return minibatch_stddev(x, self.group)
