"""Frechet distance between Gaussians, and streaming feature statistics.

    d^2 = |mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr( (C1 C2)^(1/2) )

The trace term is computed without a general (non-symmetric) matrix square root. With
S1 = C1^(1/2), the symmetric PSD square root from one eigendecomposition of C1, the matrix
C1 C2 = S1 (S1 C2 S1) S1^(-1) is similar to M = S1 C2 S1, which is symmetric PSD. So
tr((C1 C2)^(1/2)) = sum_i sqrt(lambda_i(M)) with lambda_i(M) the eigenvalues of a symmetric
matrix: real by construction. Any factor C1 = F F^T works the same way (M = F^T C2 F); the
Cholesky factor is used when C1 (or C2) is positive definite, as it is ~4x cheaper than S1. Round-off can make tiny eigenvalues slightly negative; they
are clipped at 0, so the result is never complex, and the distance itself is clipped at 0
(it is a squared distance). Two symmetric eigendecompositions (``torch.linalg.eigh``, on
whatever device the statistics live) replace the Schur-based ``scipy.linalg.sqrtm`` used by
the reference implementations, and agree with it to round-off (tests/test_metrics_frechet.py).
Everything runs in float64.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

__all__ = ["frechet_distance", "FeatureStats", "sqrtm_psd"]


def _as64(x, device=None) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t.to(device=device if device is not None else t.device, dtype=torch.float64)


def sqrtm_psd(c: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues from
    round-off clipped to 0)."""
    c = 0.5 * (c + c.transpose(-1, -2))
    w, v = torch.linalg.eigh(c)
    return (v * w.clamp_min(0).sqrt().unsqueeze(-2)) @ v.transpose(-1, -2)


def trace_sqrt_product(c1: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
    """tr((C1 C2)^(1/2)) for symmetric PSD C1, C2.

    C1 C2 is similar to the symmetric PSD matrix F^T C2 F for any factor C1 = F F^T. The
    Cholesky factor is the cheapest (n^3/3 flops, then eigenvalues only): about 4x less work
    than the eigenvector decomposition S1 = C1^(1/2). When C1 is only semi-definite
    (Cholesky fails: rank-deficient features), C2's factor is tried (the trace is symmetric
    in C1, C2), then S1 from ``eigh``, which handles any PSD matrix.
    """
    m = None
    for a, b in ((c1, c2), (c2, c1)):
        factor, info = torch.linalg.cholesky_ex(a)
        if int(info) == 0 and bool(torch.isfinite(factor).all()):
            m = factor.transpose(-1, -2) @ b @ factor
            break
    if m is None:
        s1 = sqrtm_psd(c1)
        m = s1 @ c2 @ s1
    m = 0.5 * (m + m.transpose(-1, -2))
    return torch.linalg.eigvalsh(m).clamp_min(0).sqrt().sum()


def frechet_distance(mu1, cov1, mu2, cov2, device=None) -> float:
    """Frechet distance between N(mu1, cov1) and N(mu2, cov2), in float64.

    Accepts tensors or numpy arrays; computes on ``device`` (default: where ``cov1`` is,
    so GPU statistics stay on the GPU). Returns a Python float >= 0.
    """
    mu1, mu2 = _as64(mu1, device).flatten(), _as64(mu2, device).flatten()
    dev = mu1.device
    cov1, cov2 = _as64(cov1, dev), _as64(cov2, dev)
    d = mu1.numel()
    if mu2.numel() != d:
        raise ValueError(f"mu2: {mu2.numel()} dimensions, mu1 has {d}")
    for name, c in (("cov1", cov1), ("cov2", cov2)):
        if c.shape != (d, d):
            raise ValueError(f"{name}: shape {tuple(c.shape)}, expected ({d}, {d})")
        if not torch.isfinite(c).all():
            raise ValueError(f"{name}: contains NaN or inf")
    if not (torch.isfinite(mu1).all() and torch.isfinite(mu2).all()):
        raise ValueError("mu1/mu2: contain NaN or inf")
    diff = mu1 - mu2
    tr = torch.diagonal(cov1).sum() + torch.diagonal(cov2).sum() - 2.0 * trace_sqrt_product(cov1, cov2)
    return max(float(diff.dot(diff) + tr), 0.0)


class FeatureStats:
    """Streaming mean and covariance of feature vectors, accumulated in float64.

    Keeps the count, the sum and the sum of outer products (D + D^2 numbers); features are
    never stored. ``update`` takes (N, D) batches on any device; the accumulators live on
    ``device`` (default: that of the first batch). ``merge``/``all_reduce`` combine
    statistics computed on disjoint shards (e.g. DDP ranks).
    """

    def __init__(self, dim: Optional[int] = None, device=None):
        self.dim = dim
        self.device = torch.device(device) if device is not None else None
        self.n = 0
        self._sum: Optional[torch.Tensor] = None
        self._outer: Optional[torch.Tensor] = None

    def _init(self, dim: int, device):
        self.dim = dim
        self.device = self.device or torch.device(device)
        self._sum = torch.zeros(dim, dtype=torch.float64, device=self.device)
        self._outer = torch.zeros(dim, dim, dtype=torch.float64, device=self.device)

    def update(self, feats: torch.Tensor) -> "FeatureStats":
        if feats.ndim != 2:
            raise ValueError(f"feats: expected (N, D), got shape {tuple(feats.shape)}")
        if self._sum is None:
            if self.dim is not None and feats.shape[1] != self.dim:
                raise ValueError(f"feats: {feats.shape[1]} features, expected {self.dim}")
            self._init(feats.shape[1], feats.device)
        elif feats.shape[1] != self.dim:
            raise ValueError(f"feats: {feats.shape[1]} features, expected {self.dim}")
        f = feats.detach().to(device=self.device, dtype=torch.float64)
        if not torch.isfinite(f).all():
            raise ValueError("feats: contains NaN or inf")
        self.n += f.shape[0]
        self._sum += f.sum(0)
        self._outer.addmm_(f.T, f)
        return self

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        if other.n == 0:
            return self
        if self._sum is None:
            self._init(other.dim, other._sum.device)
        if other.dim != self.dim:
            raise ValueError(f"other: {other.dim} features, expected {self.dim}")
        self.n += other.n
        self._sum += other._sum.to(self.device)
        self._outer += other._outer.to(self.device)
        return self

    def all_reduce(self, group=None) -> "FeatureStats":
        """Sums the statistics over all ranks of an initialized process group (in place)."""
        import torch.distributed as dist

        if self._sum is None:
            raise ValueError("FeatureStats.all_reduce: every rank needs at least one batch")
        n = torch.tensor([float(self.n)], dtype=torch.float64, device=self.device)
        for t in (n, self._sum, self._outer):
            dist.all_reduce(t, group=group)
        self.n = int(n.item())
        return self

    def mean_cov(self) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.n < 2:
            raise ValueError(f"FeatureStats: need at least 2 samples for a covariance, have {self.n}")
        mu = self._sum / self.n
        cov = (self._outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return mu, 0.5 * (cov + cov.T)

    def state_dict(self) -> dict:
        mu, cov = self.mean_cov()
        return {"n": self.n, "mu": mu.cpu(), "cov": cov.cpu()}

    @classmethod
    def from_features(cls, feats: torch.Tensor) -> "FeatureStats":
        return cls().update(feats)
