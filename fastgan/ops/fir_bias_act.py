r"""FIR filter + bias + activation in one pass: the ``fastgan::fir_bias_act`` op behind
:func:`fastgan.ops.upsample_conv2d` (after its transposed convolution) and
:func:`fastgan.ops.downsample_conv2d` (before its strided convolution, linear and no bias).

.. math::  y = \operatorname{clamp}(\mathrm{gain}\cdot\mathrm{act}(\mathrm{FIR}_f(\mathrm{pad}(x)) + b),\; -c,\; c)

* The filter is a parsed :class:`fastgan.ops._fir.Fir` (separable or full, up to 8 taps per
  axis, normalized and scaled by :func:`fastgan.ops._fir.parse_filter`); ``pad`` is
  ``[px0, px1, py0, py1]``, negative values crop. Then the ``bias_act`` contract.
* The forward saves only what the backward needs: for linear / relu / lrelu a uint8 mask
  (bit 0: z > 0, bit 1: not clamped), nothing at all for linear without clamp, and the
  pre-activation ``z`` for smooth activations (``_save_mode``).
* Its backward is ONE op, ``fastgan::fir_bias_act_grad``: ``g = grad * dy/dz``, the
  transposed FIR filter of ``g`` and the bias gradient (the sum of ``g``), in one pass.
* Double backward: the backward op has its own autograd formula built from the forward op
  (the adjoint of the adjoint) and ``bias_act_grad``, so gradients of gradients (path
  length regularization, R1 through the discriminator) work; for piecewise-linear
  activations to any order.
* ``out_format`` writes y (and the saved tensor) in a chosen layout, so a channels_last
  convolution before it costs no extra pass to return a contiguous result.

The filter gradient is not computed (filters are constants, as in StyleGAN2-ADA). The
reference is the pure-PyTorch composition: pad, depthwise conv2d, ``bias_act``'s reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _backend
from ._fir import Fir, filtered_size
from .bias_act import ACTIVATIONS
from .bias_act import _ref as _bias_act_ref

__all__: list[str] = []  # private: reached through upsample_conv2d / downsample_conv2d


def _fir_filter_ref(x: torch.Tensor, f2d, padding) -> torch.Tensor:
    """Pure-PyTorch FIR filter: pad (negative crops), then true 2-D convolution with f2d
    (a nested list or tensor) per channel."""
    px0, px1, py0, py1 = padding
    x = F.pad(x, [px0, px1, py0, py1])
    f = torch.as_tensor(f2d, dtype=x.dtype, device=x.device).flip([0, 1])
    c = x.shape[1]
    w = f[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, w, groups=c)


def _fir_bias_act(t, b, fir: Fir, pad, act, alpha, gain, clamp, out_format=None):
    """FIR filter + bias + activation: the fused op when available, else the reference.
    out_format: the layout of the result (default: t's); the op writes it directly."""
    if _backend.use_kernel(t) and _HAS_OP:
        y, _ = _OP(
            t, b, fir.taps, fir.fh, fir.fw, fir.separable, pad, act, alpha, gain, clamp,
            out_format,
        )
        return y
    y = _bias_act_ref(_fir_filter_ref(t, fir.conv2d, pad), b, 1, act, alpha, gain, clamp)
    return y if out_format is None else y.contiguous(memory_format=out_format)


# --------------------------------------------------------------------------------------
# Fake kernels of fastgan::fir_bias_act / fir_bias_act_grad.
# --------------------------------------------------------------------------------------


def _save_mode(act: str, clamp: float) -> str:
    if act == "linear" and clamp < 0:
        return "none"
    return "mask" if ACTIVATIONS[act].piecewise_linear else "z"


def _fir_bias_act_fake(x, b, f, fh, fw, separable, pad, act, alpha, gain, clamp,
                       out_format=None):
    if b is not None and b.device != x.device:  # what the real kernels check
        raise ValueError(f"fir_bias_act: b is on {b.device} but x is on {x.device}")
    n, c, h, w = x.shape
    shape = (n, c, filtered_size(h, pad[2], pad[3], fh), filtered_size(w, pad[0], pad[1], fw))
    fmt = _backend.memory_format_of(x) if out_format is None else out_format
    y = x.new_empty(shape).contiguous(memory_format=fmt)
    # saved: the kernel's working layout, channels_last if x or y is.
    cl = torch.channels_last in (_backend.memory_format_of(x), fmt)
    sfmt = torch.channels_last if cl else torch.contiguous_format
    mode = _save_mode(act, clamp)
    if mode == "mask":
        saved = x.new_empty(shape, dtype=torch.uint8).contiguous(memory_format=sfmt)
    elif mode == "z":
        saved = x.new_empty(shape).contiguous(memory_format=sfmt)
    else:
        saved = x.new_empty((0,), dtype=torch.uint8)
    return y, saved


def _fir_bias_act_grad_fake(grad, saved, gz, f, fh, fw, separable, pad, in_h, in_w, act,
                            alpha, gain, clamp, reduce):
    n, c = grad.shape[:2]
    # The working layout: saved's (the forward's working layout) when something is saved.
    fmt = _backend.memory_format_of(saved) if (_save_mode(act, clamp) != "none" and saved.dim() == 4) else _backend.memory_format_of(grad)
    gx = grad.new_empty((n, c, in_h, in_w)).contiguous(memory_format=fmt)
    gb = grad.new_empty((c,) if reduce else (0,))
    return gx, gb


# Autograd of both ops is in C++ (csrc/autograd/fir_bias_act.cpp): fir_bias_act's backward
# is fir_bias_act_grad, whose backward is the forward filter + bias (fir_bias_act, linear)
# followed by dy/dz, so gradients of gradients work.
_HAS_OP = _backend.op_available("fir_bias_act") and _backend.op_available("fir_bias_act_grad")
_OP = torch.ops.fastgan.fir_bias_act.default if _HAS_OP else None
if _HAS_OP:
    torch.library.register_fake("fastgan::fir_bias_act")(_fir_bias_act_fake)
    torch.library.register_fake("fastgan::fir_bias_act_grad")(_fir_bias_act_grad_fake)
