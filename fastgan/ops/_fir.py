"""FIR filter parsing and the StyleGAN2-ADA padding arithmetic, in one place.

Two filter forms are parsed here:

* float32 filter *tensors* for :func:`fastgan.ops.upfirdn2d` and the functions built on it
  (:func:`make_filter` behind ``setup_filter``, :func:`filter_size`);
* filter *values* (a list, tuple, number or tensor) for the fused ``fir_bias_act`` op behind
  ``upsample_conv2d`` / ``downsample_conv2d`` (:func:`parse_filter`: Python numbers, parsed
  once per filter and cached, so torch.compile sees constants).

The padding arithmetic keeps a resampled image centred on the input (StyleGAN2-ADA's
``upsample2d`` / ``downsample2d`` / ``conv2d_resample``); every op computes it through
:func:`up_padding`, :func:`down_padding` and :func:`transposed_conv_padding`.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence, Union

import torch

FilterLike = Union[Sequence[float], Sequence[Sequence[float]], torch.Tensor, float]

# The fused fir_bias_act kernels unroll at most this many taps per axis.
MAX_TAPS = 8


# --------------------------------------------------------------------------------------
# upfirdn2d's arguments: factors, padding, filter tensors.
# --------------------------------------------------------------------------------------


def parse_scaling(value, name: str) -> tuple[int, int]:
    """upfirdn2d's ``up`` / ``down``: an int or ``[x, y]``, each >= 1."""
    if isinstance(value, bool):
        raise TypeError(f"upfirdn2d: {name} must be an int or [x, y], got {value!r}")
    if isinstance(value, int):
        sx = sy = value
    else:
        try:
            sx, sy = (int(v) for v in value)
        except (TypeError, ValueError):
            raise TypeError(f"upfirdn2d: {name} must be an int or [x, y], got {value!r}") from None
    if sx < 1 or sy < 1:
        raise ValueError(f"upfirdn2d: {name} must be >= 1, got {value!r}")
    return sx, sy


def parse_padding(padding) -> tuple[int, int, int, int]:
    """upfirdn2d's ``padding`` (int, ``[x, y]`` or ``[x0, x1, y0, y1]``) as (x0, x1, y0, y1)."""
    if isinstance(padding, bool):
        raise TypeError(f"upfirdn2d: padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding!r}")
    if isinstance(padding, int):
        return padding, padding, padding, padding
    try:
        p = [int(v) for v in padding]
    except (TypeError, ValueError):
        raise TypeError(
            f"upfirdn2d: padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding!r}"
        ) from None
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    if len(p) == 4:
        return p[0], p[1], p[2], p[3]
    raise ValueError(f"upfirdn2d: padding must have 1, 2 or 4 values, got {padding!r}")


def filter_size(f: Optional[torch.Tensor]) -> tuple[int, int]:
    """(fw, fh) of a filter tensor in the contract's convention (None: 1x1; a 1-D filter is
    separable, so square)."""
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2):
        raise ValueError("upfirdn2d: f must be a 1-D or 2-D tensor or None")
    fw = f.shape[-1]
    fh = f.shape[0]
    return int(fw), int(fh)


def make_filter(f, device, normalize: bool, flip_filter: bool, gain: float,
                separable: Optional[bool]) -> torch.Tensor:
    """The body of :func:`fastgan.ops.setup_filter` (see its docstring)."""
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2):
        raise ValueError(f"setup_filter: f must be a scalar, 1-D or 2-D, got {f.ndim}-D")
    if f.numel() == 0:
        raise ValueError("setup_filter: f must not be empty")
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError("setup_filter: a 2-D filter cannot be made separable")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


# --------------------------------------------------------------------------------------
# Padding arithmetic and output sizes.
# --------------------------------------------------------------------------------------


def up_padding(px0, px1, py0, py1, fw, fh, upx, upy) -> list[int]:
    """The padding (x0, x1, y0, y1) plus the filter's own for upsampling by (upx, upy), which
    keeps the upsampled image centred."""
    return [
        px0 + (fw + upx - 1) // 2,
        px1 + (fw - upx) // 2,
        py0 + (fh + upy - 1) // 2,
        py1 + (fh - upy) // 2,
    ]


def down_padding(px0, px1, py0, py1, fw, fh, downx, downy) -> list[int]:
    """The padding (x0, x1, y0, y1) plus the filter's own for downsampling by (downx, downy)
    (with factor 1: the same-size padding of filter2d)."""
    return [
        px0 + (fw - downx + 1) // 2,
        px1 + (fw - downx) // 2,
        py0 + (fh - downy + 1) // 2,
        py1 + (fh - downy) // 2,
    ]


def transposed_conv_padding(px0, px1, py0, py1, fw, fh, kw, kh, up):
    """Upsampling by ``up`` with a ``kw`` x ``kh`` convolution as a stride-``up`` transposed
    convolution followed by the ``fw`` x ``fh`` FIR filter (conv2d_resample's fast path),
    for the convolution's padding (x0, x1, y0, y1) (plus, when it also downsamples, the
    downsampling filter's): returns the transposed convolution's padding ``[pyt, pxt]``
    (what it can absorb by cropping its output) and the filter's padding after it."""
    px0, px1, py0, py1 = up_padding(px0, px1, py0, py1, fw, fh, up, up)
    px0 -= kw - 1
    px1 -= kw - up
    py0 -= kh - 1
    py1 -= kh - up
    pxt = max(min(-px0, -px1), 0)
    pyt = max(min(-py0, -py1), 0)
    return [pyt, pxt], [px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt]


def out_size(n_in, up, down, p0, p1, taps):
    """upfirdn2d's output size along one axis."""
    return (n_in * up + p0 + p1 - taps) // down + 1


def filtered_size(n_in, p0, p1, taps):
    """The size along one axis after padding by (p0, p1) and a ``taps``-tap FIR filter
    (out_size without resampling, written without the factors so symbolic shapes stay plain)."""
    return n_in + p0 + p1 - taps + 1


# --------------------------------------------------------------------------------------
# Filter values for the fused fir_bias_act op.
# --------------------------------------------------------------------------------------


class Fir:
    """A parsed FIR filter: kernel taps in correlation order, and the 2-D filter in
    true-convolution order for the reference."""

    __slots__ = ("taps", "fh", "fw", "separable", "conv2d")

    def __init__(self, taps, fh, fw, separable, conv2d):
        self.taps, self.fh, self.fw, self.separable, self.conv2d = taps, fh, fw, separable, conv2d


def filter_values(f: FilterLike, op: str):
    """f as nested tuples of numbers (hashable, for the parse cache). A tensor filter is
    read once and remembered on the tensor itself until it is modified in place (its
    version counter): reading a CUDA tensor syncs with the host, which costs time on every
    call and breaks CUDA graph capture."""
    if isinstance(f, torch.Tensor):
        cached = getattr(f, "_fastgan_filter", None)
        if cached is not None and cached[0] == f._version:
            return cached[1]
        if not f.is_floating_point() and f.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"{op}: f must be a float tensor, got {f.dtype}")
        values = _to_tuples(f.detach().cpu().double().tolist())
        f._fastgan_filter = (f._version, values)
        return values
    return _to_tuples(f)


def _to_tuples(f):
    if isinstance(f, (list, tuple)):
        return tuple(_to_tuples(v) for v in f)
    return f


def parse_filter(f: FilterLike, gain: float, flip_filter: bool, op: str) -> Fir:
    """Normalizes f to unit sum and scales it by gain (per axis gain**0.5 when separable),
    as StyleGAN2-ADA's setup_filter + upfirdn2d do. Pure Python so torch.compile sees
    constants; parsed once per (filter, gain, flip)."""
    values = filter_values(f, op)
    if torch.compiler.is_compiling():  # traced once: dynamo bakes the result in anyway
        return parse_filter_values(values, gain, flip_filter, op)
    try:
        hash(values)
    except TypeError:  # not numbers (a bad filter): parse it uncached for the error
        return parse_filter_values(values, gain, flip_filter, op)
    return _parse_filter_cached(values, float(gain), bool(flip_filter), op)


def parse_filter_values(f, gain: float, flip_filter: bool, op: str) -> Fir:
    if isinstance(f, (int, float)):
        f = [float(f)]
    if not isinstance(f, (list, tuple)) or len(f) == 0:
        raise ValueError(f"{op}: f must be a non-empty 1-D (separable) or 2-D (full) filter, got {f!r}")
    if all(isinstance(v, (int, float)) for v in f):
        rows = [[float(v) for v in f]]
        separable = True
    elif all(isinstance(r, (list, tuple)) for r in f):
        rows = [[float(v) for v in r] for r in f]
        if len({len(r) for r in rows}) != 1 or len(rows[0]) == 0:
            raise ValueError(f"{op}: f must be a rectangular 2-D filter, got row lengths {[len(r) for r in rows]}")
        separable = False
    else:
        raise ValueError(f"{op}: f must be 1-D (separable) or 2-D (full), got {f!r}")
    fh = len(rows[0]) if separable else len(rows)
    fw = len(rows[0])
    if fh > MAX_TAPS or fw > MAX_TAPS:
        raise ValueError(f"{op}: f has {fh}x{fw} taps; at most {MAX_TAPS} per axis are supported")
    flat = [v for r in rows for v in r]
    if not all(math.isfinite(v) for v in flat):
        raise ValueError(f"{op}: f must be finite, got {f!r}")
    total = sum(flat)
    if total == 0:
        raise ValueError(f"{op}: f sums to zero and cannot be normalized")
    if separable:
        g1 = math.sqrt(gain)
        fv = [v / total * g1 for v in rows[0]]  # true-convolution order
        if flip_filter:
            fv = fv[::-1]
        corr = fv[::-1]
        taps = corr + corr
        conv2d = [[a * b for b in fv] for a in fv]
    else:
        fm = [[v / total * gain for v in r] for r in rows]
        if flip_filter:
            fm = [r[::-1] for r in fm[::-1]]
        corr = [r[::-1] for r in fm[::-1]]
        taps = [v for r in corr for v in r]
        conv2d = fm
    return Fir(taps, fh, fw, separable, conv2d)


_parse_filter_cached = functools.lru_cache(maxsize=256)(parse_filter_values)
