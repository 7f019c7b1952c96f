r"""conv2d / conv_transpose2d / linear whose backward can skip the weight gradient.

A gradient penalty takes ``autograd.grad(D(x).sum(), x, create_graph=True)``: only the
gradient w.r.t. the *input* images is wanted from that first backward. Inside
:func:`no_weight_gradients`, these wrappers' backward computes the input gradient only
(``convolution_backward`` with ``output_mask = (True, False, False)``; for linear, one
matmul instead of two plus a sum). Outside the context they compute every gradient that
is needed, like the stock ops.

Double backward is exact: the backward is written with differentiable ATen ops
(``aten.convolution_backward``, whose own derivative is PyTorch's conv double backward;
matmul), so the input gradient computed in the first backward stays a function of the
weight, and the penalty's second backward reaches the weight: ``d(grad_x)/d(weight)`` is
computed then, where it is needed.

Relation to stock PyTorch: ``autograd.grad(out, x)`` on stock layers already prunes the
weight gradients that cannot reach ``x`` (the engine knows which edges are needed). A
custom autograd function cannot see that, so the context tells it. ``loss.backward()``
(all leaves wanted) with these layers computes weight gradients as usual.

The context is process-wide (a counter under a lock, so it nests and is safe to enter from
several threads) because the autograd engine runs backward functions of CUDA tensors on
its own worker threads, where a thread-local flag would not be seen. While it is active
in one thread, backward passes in other threads also skip these layers' weight gradients:
do not run an ordinary ``backward()`` concurrently with a penalty's first backward.

torch.compile: AOTAutograd traces a compiled region's backward when the forward is
compiled, so the context's state at that moment is baked in. The losses call D outside the
context (only the first backward is inside), so a compiled D computes weight gradients
correctly but does not skip them in the penalty's first backward; stock-layer pruning by
the engine does not apply inside one compiled backward either.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from ._common import pair

__all__ = [
    "no_weight_gradients",
    "weight_gradients_disabled",
    "conv2d",
    "conv_transpose2d",
    "linear",
    "scaled_input_conv2d",
]

_lock = threading.Lock()
_depth = 0

_IntOr2 = Union[int, Sequence[int]]


@contextlib.contextmanager
def no_weight_gradients(enabled: bool = True) -> Iterator[None]:
    """Within the block, the backward of :func:`conv2d`, :func:`conv_transpose2d` and
    :func:`linear` skips the weight and bias gradients (they get ``None``). Nestable."""
    global _depth
    if not enabled:
        yield
        return
    with _lock:
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1


def weight_gradients_disabled() -> bool:
    """True while some :func:`no_weight_gradients` block is active."""
    return _depth > 0


class _Convolution(torch.autograd.Function):
    """aten.convolution forward; backward through aten.convolution_backward with the
    weight/bias part of the output mask turned off inside no_weight_gradients()."""

    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
        ctx.conf = (stride, padding, dilation, transposed, output_padding, groups)
        ctx.bias_sizes = None if bias is None else list(bias.shape)
        ctx.save_for_backward(input, weight)
        return torch.ops.aten.convolution(
            input, weight, bias, stride, padding, dilation, transposed, output_padding, groups
        )

    @staticmethod
    def backward(ctx, grad_out):
        input, weight = ctx.saved_tensors
        stride, padding, dilation, transposed, output_padding, groups = ctx.conf
        skip = weight_gradients_disabled()
        mask = [
            ctx.needs_input_grad[0],
            ctx.needs_input_grad[1] and not skip,
            ctx.bias_sizes is not None and ctx.needs_input_grad[2] and not skip,
        ]
        if not any(mask):
            return (None,) * 9
        gi = None
        if mask[0] and torch.is_grad_enabled():
            # the backward is being recorded (create_graph): a second backward will follow
            gi = _input_gradient(grad_out, input.shape, weight, stride, padding, dilation, transposed,
                                 output_padding, groups)
            mask = [False, mask[1], mask[2]]
        if any(mask):
            gi2, gw, gb = torch.ops.aten.convolution_backward(
                grad_out, input, weight, ctx.bias_sizes, stride, padding, dilation,
                transposed, output_padding, groups, mask,
            )
            gi = gi2 if mask[0] else gi
        mask = [gi is not None, mask[1], mask[2]]
        return (
            gi if mask[0] else None,
            gw if mask[1] else None,
            gb if mask[2] else None,
            None, None, None, None, None, None,
        )


def _input_gradient(grad_out, input_shape, weight, stride, padding, dilation, transposed, output_padding, groups):
    """The input gradient of a convolution as the adjoint convolution itself (a transposed
    convolution of grad_out for a convolution, a convolution for a transposed one) rather
    than ``convolution_backward``'s input part. Same values; the difference is in the double
    backward (a gradient penalty's second backward): through this forward op, the weight's
    second-order gradient is an ordinary weight-gradient primitive, while
    ``convolution_backward``'s own derivative computes it as a convolution whose kernel is
    the whole gradient map -- on CPU (oneDNN) a transient of gigabytes at 1024 px (2.3 GB
    for StyleGAN2's fromRGB layer at batch 2)."""
    if transposed:
        return torch.ops.aten.convolution(grad_out, weight, None, stride, padding, dilation, False,
                                          [0] * len(stride), groups)
    opad = [int(input_shape[2 + i]) - ((int(grad_out.shape[2 + i]) - 1) * stride[i] - 2 * padding[i]
                                       + dilation[i] * (int(weight.shape[2 + i]) - 1) + 1)
            for i in range(len(stride))]
    return torch.ops.aten.convolution(grad_out, weight, None, stride, padding, dilation, True, opad, groups)


def _check_conv(input, weight, bias, fn):
    if not isinstance(input, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError(f"{fn}: input and weight must be tensors")
    if input.dim() != 4:
        raise ValueError(f"{fn}: input must be 4-D (N, C, H, W), got shape {tuple(input.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"{fn}: weight must be 4-D, got shape {tuple(weight.shape)}")
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.dim() != 1):
        raise ValueError(f"{fn}: bias must be None or a 1-D tensor")


def _use_function(*tensors) -> bool:
    # Only worth the custom function when some gradient will be taken.
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _apply(fn, input, *args):
    """Runs fn.apply with autocast's cast of its tensor arguments done outside
    (differentiable casts back to the float32 parameters) and autocast off inside, so
    forward and backward agree on dtypes."""
    dev = input.device.type
    if torch.is_autocast_enabled(dev):
        dt = torch.get_autocast_dtype(dev)
        input = input.to(dt)
        args = tuple(a.to(dt) if isinstance(a, torch.Tensor) else a for a in args)
        with torch.autocast(dev, enabled=False):
            return fn.apply(input, *args)
    return fn.apply(input, *args)


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: _IntOr2 = 1,
    padding: _IntOr2 = 0,
    dilation: _IntOr2 = 1,
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv2d`` (integer padding) whose backward honours :func:`no_weight_gradients`."""
    _check_conv(input, weight, bias, "conv2d")
    stride, padding, dilation = pair(stride, "stride", "conv2d"), pair(padding, "padding", "conv2d"), pair(dilation, "dilation", "conv2d")
    if not _use_function(input, weight, bias):
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    return _apply(_Convolution, input, weight, bias, stride, padding, dilation, False, [0, 0], groups)


# Feature maps of at least this many pixels take conv2d()'s autograd function in fastgan's
# layers; below it the function's per-call cost (~55 us per forward + backward on CPU,
# measured against F.conv2d's ~75 us for a tiny map) would show, and the memory at stake
# is small.
_LAYER_MIN_PIXELS = 128 * 128


def layer_conv2d(x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor] = None, stride=1, padding=0,
                 groups: int = 1) -> torch.Tensor:
    """The convolution of fastgan's layers (and of conv2d_resample when fastgan's kernels
    run): :func:`conv2d` for maps of at least 128x128 pixels when a gradient will be taken
    -- its backward honours :func:`no_weight_gradients` and computes the input gradient as
    the adjoint convolution, which keeps a gradient penalty's second backward lean (see
    :func:`_input_gradient`) -- and ``F.conv2d`` otherwise."""
    if x.dim() == 4 and x.shape[2] * x.shape[3] >= _LAYER_MIN_PIXELS and _use_function(x, w, b):
        return conv2d(x, w, b, stride, padding, 1, groups)
    return F.conv2d(x, w, b, stride, padding, 1, groups)


class _ScaledInputConvolution(torch.autograd.Function):
    """``convolution(x * scale[:, :, None, None], w)`` saving x, scale and w -- not the
    product, which a modulated convolution would otherwise keep as one more activation-sized
    tensor per layer (x itself is kept by the layer before). The backward makes the product
    again (one elementwise pass) for ``convolution_backward``; it is written with
    differentiable ops, so a recorded backward (a path-length penalty's) differentiates as
    the composed form does."""

    @staticmethod
    def forward(ctx, x, scale, weight, stride, padding, transposed, output_padding):
        ctx.conf = (stride, padding, transposed, output_padding)
        ctx.save_for_backward(x, scale, weight)
        ctx.set_materialize_grads(False)
        xs = x * scale[:, :, None, None]
        return torch.ops.aten.convolution(xs, weight, None, stride, padding, [1, 1], transposed, output_padding, 1)

    @staticmethod
    def backward(ctx, grad_out):
        if grad_out is None:
            return (None,) * 7
        x, scale, weight = ctx.saved_tensors
        stride, padding, transposed, output_padding = ctx.conf
        s4 = scale[:, :, None, None]
        need_xs = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        need_w = ctx.needs_input_grad[2] and not weight_gradients_disabled()
        if not (need_xs or need_w):
            return (None,) * 7
        # the product only for the weight gradient (the input gradient reads its shape only)
        gxs, gw, _ = torch.ops.aten.convolution_backward(
            grad_out, x * s4 if need_w else x, weight, None, stride, padding, [1, 1], transposed,
            output_padding, 1, [need_xs, need_w, False])
        gx = gxs * s4 if ctx.needs_input_grad[0] else None
        gs = None
        if ctx.needs_input_grad[1]:
            if x.dtype in (torch.float16, torch.bfloat16):  # autocast: the sum in float32
                gs = (gxs.float() * x.float()).sum((2, 3)).to(scale.dtype)
            else:
                gs = (gxs * x).sum((2, 3))
        return gx, gs, gw if need_w else None, None, None, None, None


# Inputs of at least this many elements take _ScaledInputConvolution in scaled_input_conv2d
# (below: the composed form, free of the Python function's per-call cost, ~50 us).
_SCALED_MIN_NUMEL = 1 << 20


def scaled_input_conv2d(x: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor, stride=1, padding=0,
                        transposed: bool = False, output_padding=0) -> torch.Tensor:
    """``conv2d(x * scale[:, :, None, None], weight)`` (or ``conv_transpose2d``, weight
    ``[in, out, kh, kw]``, when ``transposed``): StyleGAN2's modulation moved onto the
    activations. ``x``: ``[N, C, H, W]``; ``scale``: ``[N, C]``, in x's dtype. When a
    gradient will be taken and x has at least 2**20 elements, the product is not saved for
    backward (:class:`_ScaledInputConvolution`); otherwise the composed form. Weight
    gradients honour :func:`no_weight_gradients` on the first path."""
    fn = "scaled_input_conv2d"
    _check_conv(x, weight, None, fn)
    if not isinstance(scale, torch.Tensor) or scale.shape != x.shape[:2]:
        raise ValueError(f"{fn}: scale must be a tensor of shape {tuple(x.shape[:2])} (N, C), "
                         f"got {tuple(scale.shape) if isinstance(scale, torch.Tensor) else type(scale).__name__}")
    if x.numel() >= _SCALED_MIN_NUMEL and _use_function(x, scale, weight):
        stride, padding = pair(stride, "stride", fn), pair(padding, "padding", fn)
        output_padding = pair(output_padding, "output_padding", fn)
        return _apply(_ScaledInputConvolution, x, scale, weight, stride, padding, transposed, output_padding)
    # the composed form (small inputs: no per-call cost beyond the stock ops', which check
    # their own arguments)
    xs = x * scale[:, :, None, None]
    if transposed:
        return F.conv_transpose2d(xs, weight, None, stride, padding, output_padding)
    return F.conv2d(xs, weight, None, stride, padding)


def conv_transpose2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: _IntOr2 = 1,
    padding: _IntOr2 = 0,
    output_padding: _IntOr2 = 0,
    groups: int = 1,
    dilation: _IntOr2 = 1,
) -> torch.Tensor:
    """``F.conv_transpose2d`` whose backward honours :func:`no_weight_gradients`."""
    fn = "conv_transpose2d"
    _check_conv(input, weight, bias, fn)
    stride, padding = pair(stride, "stride", fn), pair(padding, "padding", fn)
    output_padding, dilation = pair(output_padding, "output_padding", fn), pair(dilation, "dilation", fn)
    if not _use_function(input, weight, bias):
        return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)
    return _apply(_Convolution, input, weight, bias, stride, padding, dilation, True, output_padding, groups)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias):
        ctx.has_bias = bias is not None
        ctx.save_for_backward(input, weight)
        return F.linear(input, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        input, weight = ctx.saved_tensors
        skip = weight_gradients_disabled()
        gi = gw = gb = None
        if ctx.needs_input_grad[0]:
            gi = grad_out.matmul(weight)
        if ctx.needs_input_grad[1] and not skip:
            gw = grad_out.reshape(-1, grad_out.shape[-1]).t().matmul(input.reshape(-1, input.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2] and not skip:
            gb = grad_out.reshape(-1, grad_out.shape[-1]).sum(0)
        return gi, gw, gb


def linear(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear`` whose backward honours :func:`no_weight_gradients`."""
    if not isinstance(input, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError("linear: input and weight must be tensors")
    if weight.dim() != 2:
        raise ValueError(f"linear: weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    if input.dim() < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input's last dim ({input.shape[-1] if input.dim() else None}) must equal weight.shape[1] ({weight.shape[1]})"
        )
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (weight.shape[0],)):
        raise ValueError(f"linear: bias must be None or of shape ({weight.shape[0]},)")
    if not _use_function(input, weight, bias):
        return F.linear(input, weight, bias)
    return _apply(_Linear, input, weight, bias)
