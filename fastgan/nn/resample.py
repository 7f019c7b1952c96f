"""FIR resampling modules around :func:`fastgan.ops.upfirdn2d`. The filter is a
non-persistent buffer: it follows ``.to(device)`` but stays out of the state dict."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..ops.upfirdn2d import downsample2d, filter2d, setup_filter, upsample2d

__all__ = ["Upsample", "Downsample", "Blur"]


class _FirModule(nn.Module):
    def __init__(self, filter, padding, flip_filter, gain, separable) -> None:
        super().__init__()
        self.register_buffer("filter", setup_filter(filter, separable=separable), persistent=False)
        self.padding = padding
        self.flip_filter = bool(flip_filter)
        self.gain = float(gain)

    def _filter(self) -> torch.Tensor:
        # upfirdn2d takes float32 filters; module.double()/half() converts buffers too.
        return self.filter.float()


class _Resample(_FirModule):
    """Shared by Upsample and Downsample: a factor plus the FIR filter's settings; the
    subclass names the resampling function."""

    def __init__(
        self,
        factor: int = 2,
        filter: Sequence[float] = (1, 3, 3, 1),
        padding=0,
        flip_filter: bool = False,
        gain: float = 1,
        separable: Optional[bool] = None,
    ) -> None:
        super().__init__(filter, padding, flip_filter, gain, separable)
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._resample(x, self._filter(), self.factor, self.padding, self.flip_filter, self.gain)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, taps={tuple(self.filter.shape)}"


class Upsample(_Resample):
    """Upsample by ``factor`` with FIR filter ``filter`` (default [1, 3, 3, 1], normalized),
    keeping the mean: ``[N, C, H, W] -> [N, C, H * factor, W * factor]`` (plus padding)."""

    _resample = staticmethod(upsample2d)


class Downsample(_Resample):
    """Low-pass filter with ``filter`` and keep every ``factor``-th pixel:
    ``[N, C, H, W] -> [N, C, H // factor, W // factor]`` (plus padding)."""

    _resample = staticmethod(downsample2d)


class Blur(_FirModule):
    """FIR low-pass filter that keeps the image size (plus ``padding``)."""

    def __init__(
        self,
        filter: Sequence[float] = (1, 3, 3, 1),
        padding=0,
        flip_filter: bool = False,
        gain: float = 1,
        separable: Optional[bool] = None,
    ) -> None:
        super().__init__(filter, padding, flip_filter, gain, separable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return filter2d(x, self._filter(), self.padding, self.flip_filter, self.gain)

    def extra_repr(self) -> str:
        return f"taps={tuple(self.filter.shape)}"
