"""StyleGAN2-ADA's ``torch_utils.ops.upfirdn2d`` on :mod:`fastgan.ops.upfirdn2d`."""

from __future__ import annotations

import torch

import importlib

_ops = importlib.import_module("fastgan.ops.upfirdn2d")  # the module, not the function
from ..._backend import use_reference

__all__ = ["setup_filter", "upfirdn2d", "upsample2d", "downsample2d", "filter2d"]


def setup_filter(f, device=torch.device("cpu"), normalize=True, flip_filter=False, gain=1,
                 separable=None):
    return _ops.setup_filter(f, device=device, normalize=normalize, flip_filter=flip_filter,
                             gain=gain, separable=separable)


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl="cuda"):
    if impl == "ref":
        return _ops.upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)
    return _ops.upfirdn2d(x, f, up, down, padding, flip_filter, gain)


def _maybe_ref(impl, fn, *args):
    if impl == "ref":
        with use_reference():
            return fn(*args)
    return fn(*args)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl="cuda"):
    return _maybe_ref(impl, _ops.upsample2d, x, f, up, padding, flip_filter, gain)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl="cuda"):
    return _maybe_ref(impl, _ops.downsample2d, x, f, down, padding, flip_filter, gain)


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl="cuda"):
    return _maybe_ref(impl, _ops.filter2d, x, f, padding, flip_filter, gain)
