r"""FIR resampling of 2-D images: upsample, pad, filter, downsample in one pass.

The StyleGAN2-ADA ``upfirdn2d`` contract. For ``x`` of shape ``[N, C, H, W]``:

1. upsample by inserting ``up - 1`` zeros after each pixel (``up = [upx, upy]``);
2. pad with zeros by ``padding = [padx0, padx1, pady0, pady1]`` (negative values crop);
3. convolve with the FIR filter ``f`` (a true convolution when ``flip_filter=False``, a
   correlation when True), scaled by ``gain`` over the whole filter: a 2-D filter by
   ``gain``, a 1-D (separable) filter by ``sqrt(gain)`` on each of its two passes;
4. keep every ``down``-th pixel.

The output is ``[N, C, (H*upy + pady0 + pady1 - fh) // downy + 1, (W*upx + ...) // downx + 1]``.
A 1-D filter of ``fw`` taps is separable: it runs along x, then along y.

Gradients
---------
upfirdn2d is linear in ``x``; its gradient is upfirdn2d of the output gradient with the
filter flipped, ``up`` and ``down`` swapped and the padding adjusted, so backward calls
the op itself and gradients of every order come for free. The filter is treated as a
constant: asking for its gradient raises an error.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .. import _backend
from ._common import FLOAT_DTYPES
from ._fir import (
    down_padding,
    filter_size,
    make_filter,
    out_size,
    parse_padding,
    parse_scaling,
    up_padding,
)

__all__ = [
    "upfirdn2d",
    "upfirdn2d_ref",
    "setup_filter",
    "upsample2d",
    "downsample2d",
    "filter2d",
]

IntOrPair = Union[int, Sequence[int]]


def setup_filter(
    f,
    device: Union[torch.device, str] = "cpu",
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: Optional[bool] = None,
) -> torch.Tensor:
    """A float32 filter tensor for :func:`upfirdn2d` from a list/array/tensor.

    ``None`` means ``[1]``. A 1-D filter stays separable when ``separable`` is True, or when
    it is None and the filter has 8 taps or more; otherwise it becomes its outer product.
    ``normalize`` divides by the sum; ``flip_filter`` flips it; ``gain`` scales the whole
    filter (each of the two axes of a separable filter by ``sqrt(gain)``).
    """
    return make_filter(f, device, normalize, flip_filter, gain, separable)


def _check(x, f, up, down, padding, gain):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"upfirdn2d: x must be a tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d: x must be 4-D [N, C, H, W], got shape {tuple(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"upfirdn2d: x must be float32, float64, float16 or bfloat16, got {x.dtype}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if not isinstance(f, torch.Tensor):
        raise TypeError(f"upfirdn2d: f must be a tensor or None, got {type(f).__name__}")
    if f.ndim not in (1, 2):
        raise ValueError(f"upfirdn2d: f must be 1-D (separable) or 2-D, got shape {tuple(f.shape)}")
    if f.dtype != torch.float32:
        raise TypeError(f"upfirdn2d: f must be float32 (see setup_filter), got {f.dtype}")
    if f.numel() == 0:
        raise ValueError("upfirdn2d: f must not be empty")
    if f.device != x.device:
        raise ValueError(f"upfirdn2d: f is on {f.device} but x is on {x.device}")
    upx, upy = parse_scaling(up, "up")
    downx, downy = parse_scaling(down, "down")
    px0, px1, py0, py1 = parse_padding(padding)
    gain = float(gain)
    if not math.isfinite(gain):
        raise ValueError(f"upfirdn2d: gain must be finite, got {gain}")
    fw, fh = filter_size(f)
    _, _, h, w = x.shape
    if w * upx + px0 + px1 < fw or h * upy + py0 + py1 < fh:
        raise ValueError(
            f"upfirdn2d: padding {[px0, px1, py0, py1]} crops everything: the padded image "
            f"{w * upx + px0 + px1}x{h * upy + py0 + py1} (w x h) is smaller than the "
            f"{fw}x{fh} filter"
        )
    return f, (upx, upy, downx, downy, px0, px1, py0, py1, gain)


def _ref(x, f, flip, upx, upy, downx, downy, px0, px1, py0, py1, gain):
    n, c, h, w = x.shape
    # Upsample by inserting zeros.
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(n, c, h * upy, w * upx)
    # Pad, then crop (negative padding).
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    # conv2d correlates: flip for a true convolution.
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 1:
        # one depthwise pass with the 2-D kernel, as a stock blur does (rosinality's
        # upfirdn2d_native): two 1-D passes would save one more image for backward, and
        # this reference is also the stock kit's FIR (fastgan.use_layers("stock"))
        f = torch.outer(f, f)
    x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)
    return x[:, :, ::downy, ::downx]


def upfirdn2d_ref(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """The pure-PyTorch reference of :func:`upfirdn2d` (zero insertion, pad, conv2d)."""
    f, a = _check(x, f, up, down, padding, gain)
    return _ref(x, f, bool(flip_filter), *a)


def upfirdn2d(
    x: torch.Tensor,
    f: Optional[torch.Tensor],
    up: IntOrPair = 1,
    down: IntOrPair = 1,
    padding: IntOrPair = 0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of 2-D images (see module doc).

    Args:
        x: ``[N, C, H, W]``, float32/float64/float16/bfloat16, contiguous or channels_last.
        f: float32 filter, 1-D (separable) or 2-D ``[fh, fw]``, or None (identity);
            usually from :func:`setup_filter`. Treated as a constant (no gradient).
        up: integer upsampling factor, int or ``[x, y]``.
        down: integer downsampling factor, int or ``[x, y]``.
        padding: int, ``[x, y]`` or ``[x0, x1, y0, y1]``; negative values crop.
        flip_filter: False: convolution; True: correlation.
        gain: overall scale of the filter.
    """
    if (type(up) is int and type(down) is int and isinstance(f, torch.Tensor)
            and _backend.use_kernel(x) and _HAS_OP):
        # The fast path: ints for the factors, the padding as an int or 2 / 4 ints. The op
        # checks the tensors, the factors, the padding and a filter that requires grad
        # (not supported), in C++, naming the argument.
        p = _PAD4.get(type(padding), _no_pad)(padding)
        if p is not None and up >= 1 and down >= 1 and math.isfinite(gain):
            return _OP(x, f, up, up, down, down, p[0], p[1], p[2], p[3], bool(flip_filter), gain)
    f, a = _check(x, f, up, down, padding, gain)
    if f.requires_grad and torch.is_grad_enabled():
        raise NotImplementedError(
            "upfirdn2d: gradients w.r.t. the filter f are not supported; pass f.detach()"
        )
    if _backend.use_kernel(x) and _HAS_OP:
        return _OP(x, f.detach(), *a[:8], bool(flip_filter), a[8])
    return _ref(x, f, bool(flip_filter), *a)


def _pad_seq(p):
    if len(p) == 4 and all(type(v) is int for v in p):
        return p
    if len(p) == 2 and type(p[0]) is int and type(p[1]) is int:
        return (p[0], p[0], p[1], p[1])
    return None  # anything else: the checked path explains


def _no_pad(p):
    return None


# padding of the fast path, by type: [x0, x1, y0, y1] from an int or a list / tuple.
_PAD4 = {int: lambda p: (p, p, p, p), list: _pad_seq, tuple: _pad_seq}


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1):
    """Upsample by ``up`` with filter ``f``; the output is ``up`` times the input's size
    (plus ``padding``). The filter is scaled by ``upx * upy`` to keep the mean."""
    upx, upy = parse_scaling(up, "up")
    p = up_padding(*parse_padding(padding), *filter_size(f), upx, upy)
    return upfirdn2d(x, f, up=[upx, upy], padding=p, flip_filter=flip_filter, gain=gain * upx * upy)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1):
    """Filter with ``f`` and downsample by ``down``; the output is the input's size divided
    by ``down`` (plus ``padding``)."""
    downx, downy = parse_scaling(down, "down")
    p = down_padding(*parse_padding(padding), *filter_size(f), downx, downy)
    return upfirdn2d(x, f, down=[downx, downy], padding=p, flip_filter=flip_filter, gain=gain)


def filter2d(x, f, padding=0, flip_filter=False, gain=1):
    """Filter with ``f``, keeping the size (plus ``padding``)."""
    # downsampling by 1: the padding that keeps the size
    p = down_padding(*parse_padding(padding), *filter_size(f), 1, 1)
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain)


# --------------------------------------------------------------------------------------
# Fake kernel (shape inference for torch.compile and meta tensors).
# --------------------------------------------------------------------------------------


def _upfirdn2d_fake(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain):
    if f.device != x.device:  # what the real kernels check (a meta tensor lands here)
        raise ValueError(f"upfirdn2d: f is on {f.device} but x is on {x.device}")
    fw, fh = int(f.shape[-1]), int(f.shape[0])
    n, c, h, w = x.shape
    oh = out_size(h, upy, downy, py0, py1, fh)
    ow = out_size(w, upx, downx, px0, px1, fw)
    return x.new_empty((n, c, oh, ow)).contiguous(memory_format=_backend.memory_format_of(x))


# Autograd is in C++ (csrc/autograd/upfirdn2d.cpp): the backward is this op with the
# filter flipped, up and down swapped and the padding mapped back (any order).
_HAS_OP = _backend.op_available("upfirdn2d")
_OP = torch.ops.fastgan.upfirdn2d.default if _HAS_OP else None
if _HAS_OP:
    torch.library.register_fake("fastgan::upfirdn2d")(_upfirdn2d_fake)
