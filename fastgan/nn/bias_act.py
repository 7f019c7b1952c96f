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


class _ActTail:
    """The bias + activation (+ gain, + clamp) after a layer's linear part, as the fastgan
    kit's modules run it: one :func:`fastgan.ops.bias_act` call (under
    ``use_layers("stock")`` that op runs its reference, the textbook composition:
    ``x + b``, ``F.leaky_relu`` ..., ``* gain``, ``clamp``). ``gain`` / ``alpha`` None:
    bias_act's defaults for the activation (gain sqrt(2) for relu and lrelu), in both kits."""

    act: str
    alpha: Optional[float]
    gain: Optional[float]
    clamp: Optional[float]

    def _init_act(self, act: str, alpha: Optional[float], gain: Optional[float], clamp: Optional[float]) -> None:
        if act not in ACTIVATIONS:
            raise ValueError(f"act: unknown {act!r}; expected one of {', '.join(ACTIVATIONS)}")
        if clamp is not None and not clamp >= 0:
            raise ValueError(f"clamp: expected None or >= 0, got {clamp}")
        self.act = act
        self.alpha = None if alpha is None else float(alpha)
        self.gain = None if gain is None else float(gain)
        self.clamp = None if clamp is None else float(clamp)

    def _is_identity(self) -> bool:
        return self.act == "linear" and (self.gain is None or self.gain == 1.0) and self.clamp is None

    def _tail(self, x: torch.Tensor, b: Optional[torch.Tensor], dim: int = 1) -> torch.Tensor:
        if b is None and self._is_identity():
            return x  # nothing to do: no copy pass
        if b is not None and b.dtype != x.dtype:
            b = b.to(x.dtype)  # autocast: the layer ran in the lower precision
        return bias_act(x, b, dim, self.act, self.alpha, self.gain, self.clamp)

    def _act_repr(self) -> str:
        s = f", act={self.act!r}"
        if self.gain is not None:
            s += f", gain={self.gain:g}"
        if self.clamp is not None:
            s += f", clamp={self.clamp:g}"
        return s
