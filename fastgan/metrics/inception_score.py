"""Inception Score (Salimans et al. 2016) from class probabilities:

    IS = exp( E_x KL( p(y|x) || p(y) ) ),  p(y) = E_x p(y|x),

computed on ``splits`` equal consecutive chunks (10 by convention) and reported as the mean
and standard deviation over chunks. Runs in float64; 0 * log 0 is taken as 0.
"""

from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["inception_score"]


def inception_score(probs: torch.Tensor, splits: int = 10) -> Tuple[float, float]:
    if probs.ndim != 2:
        raise ValueError(f"probs: expected (N, C) class probabilities, got shape {tuple(probs.shape)}")
    n = probs.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"splits: need 1 <= splits <= N (splits={splits}, N={n})")
    p = probs.detach().double()
    if (p < 0).any() or not torch.allclose(p.sum(1), torch.ones(n, dtype=torch.float64, device=p.device), atol=1e-3):
        raise ValueError("probs: rows must be probability vectors (non-negative, summing to 1); pass softmax outputs")
    scores = []
    for chunk in torch.tensor_split(p, splits):
        py = chunk.mean(0, keepdim=True)
        kl = torch.xlogy(chunk, chunk) - torch.xlogy(chunk, py)
        scores.append(torch.exp(kl.sum(1).mean()))
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False)) if splits > 1 else 0.0
