"""Small helpers shared by several ops (one definition each, see DESIGN.md)."""

from __future__ import annotations

import torch

# The dtypes every op accepts for its data (half types compute in float32).
FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def pair(v, name: str, op: str) -> tuple[int, int]:
    """``v`` as ``(a, b)``: an int (not a bool) for both, or a list / tuple of two ints.
    Errors name the op and the argument."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v, v
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return int(v[0]), int(v[1])
    raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
