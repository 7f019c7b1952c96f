r"""The fused upsampling block of StyleGAN-like generators, and its discriminator mirror.

``upsample_conv2d(x, weight, bias, f, up=2, act='lrelu', ...)`` computes

.. math::  y = \operatorname{clamp}(\mathrm{gain}\cdot\mathrm{act}(\mathrm{FIR}_f(
           \mathrm{conv\_transpose2d}(x, w, \mathrm{stride}=up)) + b),\; -c,\; c)

with the StyleGAN2-ADA ``conv2d_resample(x, w, f, up=up, padding=k // 2)`` contract for the
transposed convolution and the filter (filter normalized to unit sum, gain ``up**2``, the
padding arithmetic of that contract), followed by the ``bias_act`` contract.

* The transposed convolution runs in ATen (oneDNN / cuDNN). On CPU (float32) it runs in
  channels_last (oneDNN's stride-2 transposed convolution is ~3x faster so) and the fused
  op writes its result straight back in x's layout (``out_format``: the epilogue transposes
  each row in cache). The saved mask stays in channels_last, the backward op reads the
  contiguous grad of y transposing it in cache, and the convolution's backward runs in
  channels_last too.
* Everything after it -- FIR filter (separable or full, up to 8 taps per axis), bias,
  activation, gain, clamp -- is ONE op, ``fastgan::fir_bias_act`` (one pass over memory,
  saving only a mask or the pre-activation; its backward is one op too, and double
  backward works: see :mod:`fastgan.ops.fir_bias_act`). The transposed convolution saves
  its input and weight as usual; the upsampled intermediate is never saved.

``downsample_conv2d`` (discriminator) is FIR filter, strided convolution, bias_act. The FIR
filter runs as ``fir_bias_act`` with a linear activation and no bias (one pass); the
convolution in ATen; bias + activation after it are fused by ``bias_act``. Fusing the
filter into the convolution's input would mean writing our own convolution, which does not
pay against oneDNN / cuDNN, so that part is composed -- but its memory is not: on maps of
128x128 pixels or more (smaller ones would feel the Python function's per-call cost, and
save little), the filter + convolution pair is one autograd function (``_FirDownConv``)
that saves x and the weight,
not the filtered copy of x (the layer before keeps x anyway). Its backward runs the
convolution's input gradient as a transposed convolution of the output gradient and the
filter's adjoint (``fir_bias_act_grad``); only the weight gradient filters x again. Inside
``no_weight_gradients`` (a penalty's first backward, as R1's) the weight gradient is
skipped, so the penalty's graph does not keep the filtered copy either. Double backward
works: the backward is made of differentiable ops.

The filter gradient is not computed (filters are constants, as in StyleGAN2-ADA).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .. import _backend
from ._common import FLOAT_DTYPES, pair
from ._fir import (
    FilterLike,
    down_padding,
    filtered_size,
    parse_filter,
    transposed_conv_padding,
)
from .bias_act import ACTIVATIONS, _check_args
from .conv2d_gradfix import _LAYER_MIN_PIXELS as _LEAN_MIN_PIXELS  # below: composed, no per-call cost
from .conv2d_gradfix import _apply, _input_gradient, weight_gradients_disabled
from .fir_bias_act import _HAS_OP, _fir_bias_act

__all__ = [
    "upsample_conv2d",
    "upsample_conv2d_ref",
    "downsample_conv2d",
    "downsample_conv2d_ref",
]

# dtypes whose CPU transposed convolution runs in channels_last (measured for float32;
# tests widen it to cover the path in every dtype).
_CL_CONV_DTYPES = (torch.float32,)


def _check_tensors(x, weight, bias, op):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a tensor, got {type(x).__name__}")
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{op}: weight must be a tensor, got {type(weight).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: x must be float32, float64, float16 or bfloat16, got {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{op}: x must be 4-D [N, C, H, W], got shape {tuple(x.shape)}")
    if weight.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D [out, in, kh, kw], got shape {tuple(weight.shape)}")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"{op}: weight has {weight.shape[1]} input channels but x has {x.shape[1]} channels"
        )
    # Under autocast the convolution casts x and weight itself (one autocast layer feeding
    # another hands over a half-precision x with float32 weights), and the bias is cast to
    # the convolution's output dtype before the fused epilogue (_bias_like).
    autocast = torch.is_autocast_enabled(x.device.type)
    if weight.dtype != x.dtype and not autocast:
        raise TypeError(f"{op}: weight has dtype {weight.dtype} but x has dtype {x.dtype}")
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"{op}: bias must be a tensor or None, got {type(bias).__name__}")
        if bias.ndim != 1 or bias.shape[0] != weight.shape[0]:
            raise ValueError(
                f"{op}: bias must have shape ({weight.shape[0]},) (weight's output channels), "
                f"got {tuple(bias.shape)}"
            )
        if bias.dtype != x.dtype and not autocast:
            raise TypeError(f"{op}: bias has dtype {bias.dtype} but x has dtype {x.dtype}")


def _bias_like(bias, t):
    """The bias in the convolution output's dtype (they differ only under autocast)."""
    return bias.to(t.dtype) if bias is not None and bias.dtype != t.dtype else bias


def _check_factor(v, name, op):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{op}: {name} must be an int >= 1, got {v!r}")


def _cpu_channels_last_conv(x: torch.Tensor) -> bool:
    """Whether the block runs its transposed convolution (and that convolution's backward)
    in channels_last: on CPU, float32, with the fused kernels, which write y back in x's
    layout and read a contiguous grad of y for channels_last work without extra passes.
    oneDNN's stride-2 transposed convolution is ~3x faster in channels_last there
    ((8, 128, 32, 32), 3x3: 14 ms vs 44 ms), its input gradient faster too."""
    return (x.is_cpu and x.dtype in _CL_CONV_DTYPES
            and _backend.use_kernel(x) and _HAS_OP)


def _prepare(x, weight, bias, factor, factor_name, act, alpha, gain, clamp, padding, op):
    _check_tensors(x, weight, bias, op)
    _check_factor(factor, factor_name, op)
    if act not in ACTIVATIONS:
        raise ValueError(f"{op}: unknown act {act!r}; expected one of {', '.join(ACTIVATIONS)}")
    _, alpha, gain, clamp = _check_args(x, None, 1, act, alpha, gain, clamp)
    if padding is None:
        padding = (weight.shape[2] // 2, weight.shape[3] // 2)
    padding = pair(padding, "padding", op)
    return alpha, gain, clamp, padding


def upsample_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    f: FilterLike = (1, 3, 3, 1),
    up: int = 2,
    act: str = "lrelu",
    alpha: Optional[float] = None,
    gain: Optional[float] = None,
    clamp: Optional[float] = None,
    *,
    padding=None,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """``bias_act(conv2d_resample(x, weight, f, up=up, padding=padding), bias, act=act,
    alpha=alpha, gain=gain, clamp=clamp)``, with the filter, bias and activation fused.

    Args:
        x: [N, C_in, H, W] float32/float64/float16/bfloat16, contiguous or channels_last.
        weight: [C_out, C_in, kh, kw] convolution weight (conv2d_resample's convention).
        bias: optional [C_out].
        f: FIR filter, 1-D (separable) or 2-D, at most 8 taps per axis; normalized to unit
            sum and scaled by ``up**2``.
        up: upsampling factor (int >= 1; 1 means a plain same-padded convolution + bias_act).
        act, alpha, gain, clamp: as :func:`fastgan.ops.bias_act` (gain default sqrt(2) for
            lrelu).
        padding: int or (py, px) padding of the convolution (default ``k // 2``).
        flip_weight, flip_filter: as conv2d_resample (defaults give its default behaviour).

    Returns [N, C_out, H * up, W * up] for odd k with the default padding.
    """
    op = "upsample_conv2d"
    alpha, gain, clamp, padding = _prepare(x, weight, bias, up, "up", act, alpha, gain, clamp, padding, op)
    if up == 1:
        w = weight if flip_weight else weight.flip([2, 3])
        t = F.conv2d(x, w, padding=padding)
        from .bias_act import bias_act

        return bias_act(t, _bias_like(bias, t), 1, act, alpha, gain, None if clamp < 0 else clamp)
    fir = parse_filter(f, float(up * up), flip_filter, op)
    py, px = padding
    tpad, fpad = transposed_conv_padding(px, px, py, py, fir.fw, fir.fh,
                                         weight.shape[3], weight.shape[2], up)
    wt = weight.transpose(0, 1)
    if flip_weight:
        wt = wt.flip([2, 3])
    if _cpu_channels_last_conv(x):
        # Channels_last convolution (x is 1/4 of the output: converting it is cheap); the
        # fused epilogue writes y in x's layout, and its backward reads y's gradient in that
        # layout and hands the convolution's backward a channels_last gradient.
        cl = torch.channels_last
        t = F.conv_transpose2d(x.contiguous(memory_format=cl), wt.contiguous(memory_format=cl),
                               stride=up, padding=tpad)
        out_format = _backend.memory_format_of(x)
    else:
        t = F.conv_transpose2d(x, wt, stride=up, padding=tpad)
        out_format = None
    if (filtered_size(t.shape[2], fpad[2], fpad[3], fir.fh) < 1
            or filtered_size(t.shape[3], fpad[0], fpad[1], fir.fw) < 1):
        raise ValueError(f"{op}: padding {padding} leaves an empty output")
    return _fir_bias_act(t, _bias_like(bias, t), fir, fpad, act, alpha, gain, clamp, out_format)


def upsample_conv2d_ref(x, weight, bias=None, f=(1, 3, 3, 1), up=2, act="lrelu", alpha=None,
                        gain=None, clamp=None, *, padding=None, flip_weight=True,
                        flip_filter=False):
    """Pure-PyTorch reference of :func:`upsample_conv2d` (same arguments and result):
    conv_transpose2d, pad, depthwise conv2d, bias, activation, gain, clamp."""
    with _backend.use_reference():
        return upsample_conv2d(x, weight, bias, f, up, act, alpha, gain, clamp,
                               padding=padding, flip_weight=flip_weight, flip_filter=flip_filter)


def downsample_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    f: FilterLike = (1, 3, 3, 1),
    down: int = 2,
    act: str = "lrelu",
    alpha: Optional[float] = None,
    gain: Optional[float] = None,
    clamp: Optional[float] = None,
    *,
    padding=None,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """``bias_act(conv2d_resample(x, weight, f, down=down, padding=padding), bias, ...)``:
    the FIR filter (one fused pass, saves nothing), the strided convolution (ATen), then
    the fused bias + activation. Output [N, C_out, H // down, W // down] for odd k."""
    op = "downsample_conv2d"
    alpha, gain, clamp, padding = _prepare(x, weight, bias, down, "down", act, alpha, gain, clamp, padding, op)
    from .bias_act import bias_act

    w = weight if flip_weight else weight.flip([2, 3])
    clamp_arg = None if clamp < 0 else clamp
    if down == 1:
        t = F.conv2d(x, w, padding=padding)
        return bias_act(t, _bias_like(bias, t), 1, act, alpha, gain, clamp_arg)
    fir = parse_filter(f, 1.0, flip_filter, op)
    py, px = padding
    fpad = down_padding(px, px, py, py, fir.fw, fir.fh, down, down)
    if (filtered_size(x.shape[2], fpad[2], fpad[3], fir.fh) < 1
            or filtered_size(x.shape[3], fpad[0], fpad[1], fir.fw) < 1):
        raise ValueError(f"{op}: padding {padding} leaves an empty output")
    # In x's layout: a channels_last variant (filter writing channels_last, strided
    # convolution and its backward in channels_last) measured no gain on CPU, so it was dropped.
    if (x.shape[2] * x.shape[3] >= _LEAN_MIN_PIXELS and _backend.use_kernel(x) and _HAS_OP
            and torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)):
        t = _apply(_FirDownConv, x, w, fir, fpad, down)  # autocast's cast outside, off inside
    else:
        t = _fir_bias_act(x, None, fir, fpad, "linear", 0.0, 1.0, -1.0)
        t = F.conv2d(t, w, stride=down)
    return bias_act(t, _bias_like(bias, t), 1, act, alpha, gain, clamp_arg)


class _FirDownConv(torch.autograd.Function):
    """``conv2d(FIR(x), w, stride=down)`` saving (x, w): the filtered copy of x is made again
    in backward for the weight gradient only. See the module docs."""

    @staticmethod
    def forward(ctx, x, w, fir, fpad, down):
        t = _fir_bias_act(x, None, fir, fpad, "linear", 0.0, 1.0, -1.0)
        ctx.conf = (fir, fpad, down, t.shape[2], t.shape[3])
        ctx.save_for_backward(x, w)
        ctx.set_materialize_grads(False)
        return F.conv2d(t, w, stride=down)

    @staticmethod
    def backward(ctx, gy):
        if gy is None:
            return None, None, None, None, None
        x, w = ctx.saved_tensors
        fir, fpad, down, th, tw = ctx.conf
        gx = gw = None
        if ctx.needs_input_grad[0]:
            # the convolution's input gradient (size th x tw), then the filter's adjoint
            gt = _input_gradient(gy, (0, 0, th, tw), w, [down, down], [0, 0], [1, 1], False, [0, 0], 1)
            gx, _ = torch.ops.fastgan.fir_bias_act_grad(
                gt, gt.new_empty((0,), dtype=torch.uint8), None, fir.taps, fir.fh, fir.fw,
                fir.separable, fpad, x.shape[2], x.shape[3], "linear", 0.0, 1.0, -1.0, False)
        if ctx.needs_input_grad[1] and not weight_gradients_disabled():
            t = _fir_bias_act(x, None, fir, fpad, "linear", 0.0, 1.0, -1.0)
            gw = torch.ops.aten.convolution_backward(
                gy, t, w, None, [down, down], [0, 0], [1, 1], False, [0, 0], 1,
                [False, True, False])[1]
        return gx, gw, None, None, None


def downsample_conv2d_ref(x, weight, bias=None, f=(1, 3, 3, 1), down=2, act="lrelu",
                          alpha=None, gain=None, clamp=None, *, padding=None,
                          flip_weight=True, flip_filter=False):
    """Pure-PyTorch reference of :func:`downsample_conv2d`."""
    with _backend.use_reference():
        return downsample_conv2d(x, weight, bias, f, down, act, alpha, gain, clamp,
                                 padding=padding, flip_weight=flip_weight,
                                 flip_filter=flip_filter)
