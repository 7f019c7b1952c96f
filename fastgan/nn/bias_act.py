"""Modules around :func:`fastgan.ops.bias_act`."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..ops.bias_act import ACTIVATIONS, bias_act

__all__ = ["BiasAct", "FusedLeakyReLU"]


class BiasAct(nn.Module):
    """Learned per-channel bias followed by an activation, gain and clamp, in one kernel.

    Args:
        channels: size of ``dim`` of the input (the bias length).
        act, alpha, gain, clamp: as in :func:`fastgan.ops.bias_act`.
        dim: the channel dimension of the input (1 for NCHW and (N, C) inputs).
        bias: learn a bias (``self.bias``, initialized to ``bias_init``); False: none.
    """

    def __init__(
        self,
        channels: int,
        act: str = "linear",
        alpha: Optional[float] = None,
        gain: Optional[float] = None,
        clamp: Optional[float] = None,
        dim: int = 1,
        bias: bool = True,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"BiasAct: unknown act {act!r}; expected one of {', '.join(ACTIVATIONS)}")
        if channels < 1:
            raise ValueError(f"BiasAct: channels must be >= 1, got {channels}")
        self.channels, self.act, self.alpha, self.gain, self.clamp, self.dim = (
            channels, act, alpha, gain, clamp, dim,
        )
        self.bias = nn.Parameter(torch.full((channels,), float(bias_init))) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias
        if b is not None and b.dtype != x.dtype:
            b = b.to(x.dtype)  # autocast / mixed precision: compute in the input's dtype
        return bias_act(x, b, self.dim, self.act, self.alpha, self.gain, self.clamp)

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, act={self.act!r}, alpha={self.alpha}, gain={self.gain}, "
            f"clamp={self.clamp}, dim={self.dim}, bias={self.bias is not None}"
        )


class FusedLeakyReLU(nn.Module):
    """Drop-in for rosinality's ``FusedLeakyReLU``: same constructor and parameter name
    (``bias``, zeros), so existing state dicts load unchanged."""

    def __init__(
        self,
        channel: int,
        bias: bool = True,
        negative_slope: float = 0.2,
        scale: float = 2**0.5,
    ) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        b = self.bias
        if b is not None and b.dtype != input.dtype:
            b = b.to(input.dtype)
        return bias_act(input, b, 1, "lrelu", self.negative_slope, self.scale)
