"""Kernel Inception Distance (Binkowski et al. 2018): the unbiased estimate of the squared
maximum mean discrepancy with the polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over
random subsets (drawn without replacement within a subset), reported as mean and std.

For subsets X (from set 1) and Y (from set 2) of equal size m:

    MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
              - 2 sum_{i,j} k(x_i, y_j) / m^2
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

__all__ = ["kernel_inception_distance", "polynomial_mmd2_unbiased"]


def _poly_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def polynomial_mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 between two equally sized sets (float64 scalar tensor)."""
    if x.ndim != 2 or y.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x, y: expected equal (m, d) shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    m = x.shape[0]
    if m < 2:
        raise ValueError("x, y: need at least 2 samples each")
    x, y = x.double(), y.double()
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    sxx = kxx.sum() - torch.diagonal(kxx).sum()
    syy = kyy.sum() - torch.diagonal(kyy).sum()
    return (sxx + syy) / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m)


def kernel_inception_distance(
    feats1: torch.Tensor,
    feats2: torch.Tensor,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: Optional[int] = 0,
) -> Tuple[float, float]:
    """KID between two feature sets (N1, D) and (N2, D): (mean, std) over ``num_subsets``
    subsets of ``min(subset_size, N1, N2)`` samples each. Deterministic for a given seed."""
    if feats1.ndim != 2 or feats2.ndim != 2 or feats1.shape[1] != feats2.shape[1]:
        raise ValueError(f"feats1, feats2: expected (N, D) with equal D, got {tuple(feats1.shape)} and {tuple(feats2.shape)}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets: expected >= 1, got {num_subsets}")
    m = min(subset_size, feats1.shape[0], feats2.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples in each set (have {feats1.shape[0]} and {feats2.shape[0]})")
    gen = torch.Generator().manual_seed(seed if seed is not None else torch.seed())
    vals = torch.empty(num_subsets, dtype=torch.float64)
    for i in range(num_subsets):
        i1 = torch.randperm(feats1.shape[0], generator=gen)[:m].to(feats1.device)
        i2 = torch.randperm(feats2.shape[0], generator=gen)[:m].to(feats2.device)
        vals[i] = polynomial_mmd2_unbiased(feats1[i1], feats2[i2].to(feats1.device)).cpu()
    std = float(vals.std(unbiased=True)) if num_subsets > 1 else 0.0
    return float(vals.mean()), std
