"""Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds.

The manifold of a feature set is the union of balls centred at its points, each with the
radius to the point's k-th nearest neighbour within the set (k = 3, itself excluded).
Precision is the fraction of generated samples inside the real manifold; recall the
fraction of real samples inside the generated manifold. Distances are computed in blocks
(``block`` rows at a time), so memory stays O(block * N).
"""

from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["precision_recall", "knn_radii", "manifold_coverage"]


def _cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Squared-norm expansion (one matmul), clamped: distances are never negative.
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1).unsqueeze(0) - 2.0 * (a @ b.T)
    return d2.clamp_min_(0).sqrt_()


def knn_radii(feats: torch.Tensor, k: int = 3, block: int = 1024) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point in the same set."""
    n = feats.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k: need 1 <= k < N (k={k}, N={n})")
    out = torch.empty(n, dtype=feats.dtype, device=feats.device)
    for s in range(0, n, block):
        d = _cdist(feats[s : s + block], feats)
        # The k+1 smallest include the point itself (distance 0).
        out[s : s + block] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def manifold_coverage(manifold: torch.Tensor, radii: torch.Tensor, queries: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """Fraction of ``queries`` inside the union of balls (manifold[i], radii[i])."""
    inside = torch.zeros(queries.shape[0], dtype=torch.bool, device=queries.device)
    for s in range(0, queries.shape[0], block):
        d = _cdist(queries[s : s + block], manifold)
        inside[s : s + block] = (d <= radii.unsqueeze(0)).any(1)
    return inside.double().mean()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3, block: int = 1024,
                     dtype: torch.dtype = torch.float64) -> Tuple[float, float]:
    """(precision, recall) of ``fake`` features with respect to ``real`` features."""
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"real, fake: expected (N, D) with equal D, got {tuple(real.shape)} and {tuple(fake.shape)}")
    real, fake = real.to(dtype), fake.to(dtype=dtype, device=real.device)
    precision = manifold_coverage(real, knn_radii(real, k, block), fake, block)
    recall = manifold_coverage(fake, knn_radii(fake, k, block), real, block)
    return float(precision), float(recall)
