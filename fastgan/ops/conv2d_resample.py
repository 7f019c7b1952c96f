r"""2-D convolution with optional FIR up/downsampling (the StyleGAN2-ADA contract).

``conv2d_resample(x, w, f, up, down, padding)`` equals, up to rounding,

    upfirdn2d(x, f, up=up, padding=p_up, gain=up**2)  ->  conv2d(., w)  ->  upfirdn2d(., f, down=down, padding=p_down)

where the FIR padding keeps the image centred (``p_up`` / ``p_down`` as in
:func:`fastgan.ops.upsample2d` / :func:`fastgan.ops.downsample2d`). It is computed the
cheap way: upsampling runs the convolution as a stride-``up`` transposed convolution
followed by the filter; downsampling filters, then runs a stride-``down`` convolution;
1x1 convolutions run at the low resolution. The convolutions are ATen's (oneDNN / cuDNN);
the FIR filtering is :func:`fastgan.ops.upfirdn2d`.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .. import _backend
from ._fir import down_padding, filter_size, parse_padding, transposed_conv_padding, up_padding
from .conv2d_gradfix import layer_conv2d, scaled_input_conv2d
from .upfirdn2d import upfirdn2d

__all__ = ["conv2d_resample"]


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True, scale=None):
    # conv2d correlates (flip_weight=True); a true convolution flips the kernel.
    if not flip_weight:
        w = w.flip([2, 3])
    if scale is not None:  # groups == 1 here (see conv2d_resample)
        if _backend.use_kernel(x):
            return scaled_input_conv2d(x, scale, w, stride, padding, transposed=transpose)
        x = x * scale[:, :, None, None]
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    if _backend.use_kernel(x):  # fastgan's kernels run: the lean double backward, see layer_conv2d
        return layer_conv2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: Optional[torch.Tensor] = None,
    up: int = 1,
    down: int = 1,
    padding=0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
    *,
    input_scale: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Convolution of ``x`` ``[N, C_in, H, W]`` with ``w`` ``[C_out, C_in / groups, kh, kw]``
    with FIR upsampling by ``up`` before it and/or downsampling by ``down`` after it.

    Args:
        f: float32 FIR filter (1-D separable or 2-D, from :func:`setup_filter`), or None
            (a box of one tap: plain zero insertion / decimation).
        up, down: integer factors >= 1.
        padding: int, ``[x, y]`` or ``[x0, x1, y0, y1]``, in the convolution's own terms.
        groups: as in ``torch.nn.functional.conv2d``.
        flip_weight: True: correlation with ``w`` (as conv2d); False: true convolution.
        flip_filter: passed to upfirdn2d (False: true convolution with ``f``).
        input_scale: fastgan's extension for modulated convolutions: ``[N, C_in]``, in x's
            dtype; the result is that of ``x * input_scale[:, :, None, None]``. With
            fastgan's kernels on, a large product is not saved for backward
            (:func:`fastgan.ops.conv2d_gradfix.scaled_input_conv2d`).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError("conv2d_resample: x must be a 4-D tensor [N, C, H, W]")
    if not isinstance(w, torch.Tensor) or w.ndim != 4:
        raise ValueError("conv2d_resample: w must be a 4-D tensor [C_out, C_in/groups, kh, kw]")
    if w.dtype != x.dtype:
        raise TypeError(f"conv2d_resample: w has dtype {w.dtype} but x has dtype {x.dtype}")
    if f is not None and (
        not isinstance(f, torch.Tensor) or f.ndim not in (1, 2) or f.dtype != torch.float32
    ):
        raise ValueError("conv2d_resample: f must be None or a 1-D/2-D float32 tensor")
    for name, v in (("up", up), ("down", down), ("groups", groups)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"conv2d_resample: {name} must be an int >= 1, got {v!r}")
    if input_scale is not None:
        if not isinstance(input_scale, torch.Tensor) or input_scale.shape != x.shape[:2]:
            raise ValueError(f"conv2d_resample: input_scale must be a tensor of shape {tuple(x.shape[:2])} (N, C_in)")
        if groups != 1 or (down > 1 and up == 1):
            # the paths that filter x before convolving it (and grouped convolutions): the
            # product up front
            x = x * input_scale[:, :, None, None]
            input_scale = None
    out_channels, in_per_group, kh, kw = (int(s) for s in w.shape)
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)

    # The FIR filter's own padding, which keeps the image centred (for upsampling: added
    # where the filter runs, below).
    if down > 1:
        px0, px1, py0, py1 = down_padding(px0, px1, py0, py1, fw, fh, down, down)

    # 1x1 convolution, downsampling only: downsample first (fewer pixels to convolve).
    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)

    # 1x1 convolution, upsampling only: convolve first, then upsample.
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight, scale=input_scale)
        return upfirdn2d(
            x, f, up=up, padding=up_padding(px0, px1, py0, py1, fw, fh, up, up), gain=up**2,
            flip_filter=flip_filter,
        )

    # Downsampling only: filter, then a strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling (optionally followed by downsampling): a strided transposed convolution
    # does the zero insertion and the convolution at once, then the filter.
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)
            w = w.transpose(1, 2)
            w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
        tpad, fpad = transposed_conv_padding(px0, px1, py0, py1, fw, fh, kw, kh, up)
        x = _conv(
            x, w, stride=up, padding=tpad, groups=groups, transpose=True,
            flip_weight=not flip_weight, scale=input_scale,
        )
        x = upfirdn2d(x, f, padding=fpad, gain=up**2, flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    # No resampling (every case left), symmetric non-negative padding: a plain convolution.
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight, scale=input_scale)

    # Everything else (no resampling; asymmetric or negative padding): pad / crop with
    # upfirdn2d, then convolve.
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
    return _conv(x, w, groups=groups, flip_weight=flip_weight, scale=input_scale)
