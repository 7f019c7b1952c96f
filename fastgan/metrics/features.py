"""Feature extraction: backbones (the FID Inception network, the offline classifier) run
over a source in batches, accumulating float64 statistics on the fly and, when a metric
needs them, keeping the features in memory. Under ``torch.distributed`` each rank takes
its share of batches; statistics are all-reduced and features all-gathered in the global
sample order, so every rank gets the single-process result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from .frechet import FeatureStats

__all__ = ["Backbone", "ExtractResult", "extract", "dist_info"]


@dataclass
class Backbone:
    """A fixed feature map: ``fn(images) -> (features, logits or None)``."""

    name: str
    fn: object
    num_features: int
    weights_sha256: Optional[str]
    resize: str
    extra: dict = field(default_factory=dict)

    def provenance(self) -> dict:
        return dict({"backbone": self.name, "weights_sha256": self.weights_sha256, "resize": self.resize}, **self.extra)


@dataclass
class ExtractResult:
    n: int
    stats: Optional[FeatureStats] = None
    features: Optional[torch.Tensor] = None  # (n, D) float32, global sample order
    logits: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None


def dist_info():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_rows(local: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """All-gathers rows from every rank and puts row ``index[i]`` at position index[i]."""
    import torch.distributed as dist

    world = dist.get_world_size()
    dev = local.device if dist.get_backend() != "gloo" else torch.device("cpu")
    local, index = local.to(dev), index.to(dev)
    count = torch.tensor([local.shape[0]], device=dev)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    m = int(max(c.item() for c in counts))
    pad = torch.zeros((m - local.shape[0],) + tuple(local.shape[1:]), dtype=local.dtype, device=dev)
    pad_i = torch.full((m - local.shape[0],), -1, dtype=index.dtype, device=dev)
    rows = [torch.empty((m,) + tuple(local.shape[1:]), dtype=local.dtype, device=dev) for _ in range(world)]
    idxs = [torch.empty(m, dtype=index.dtype, device=dev) for _ in range(world)]
    dist.all_gather(rows, torch.cat([local, pad]))
    dist.all_gather(idxs, torch.cat([index, pad_i]))
    rows, idxs = torch.cat(rows), torch.cat(idxs)
    keep = idxs >= 0
    out = torch.empty((n,) + tuple(local.shape[1:]), dtype=local.dtype, device=dev)
    out[idxs[keep]] = rows[keep]
    return out


@torch.no_grad()
def extract(backbone: Backbone, source, n: Optional[int], batch_size: int = 250, device="cpu",
            keep_features: bool = False, keep_logits: bool = False, keep_labels: bool = False) -> ExtractResult:
    """Runs ``backbone`` over ``n`` samples of ``source`` (None: all of a tensor source)."""
    rank, world = dist_info()
    if n is None:
        n = len(source)
    stats = FeatureStats(backbone.num_features, device=device)
    feats, logits, labels, index = [], [], [], []
    for start, images, lab in source.batches(n, batch_size, device=device, rank=rank, world=world):
        f, lg = backbone.fn(images)
        stats.update(f)
        index.append(torch.arange(start, start + f.shape[0]))
        if keep_features:
            feats.append(f.float().cpu())
        if keep_logits:
            if lg is None:
                raise ValueError(f"backbone {backbone.name}: has no classifier logits")
            logits.append(lg.float().cpu())
        if keep_labels:
            if lab is None:
                raise ValueError("source: has no labels (a conditional generator or a labelled dataset is needed)")
            labels.append(lab.cpu())
    out = ExtractResult(n=n, stats=stats)
    if world > 1:
        # Each rank must hold at least one batch to contribute: n >= world * batch_size is
        # not required, but ranks without batches still join the collectives.
        if stats._sum is None:
            stats._init(backbone.num_features, device)
        stats.all_reduce()
    idx = torch.cat(index) if index else torch.zeros(0, dtype=torch.long)
    for name, parts, dim in (("features", feats, backbone.num_features), ("logits", logits, None), ("labels", labels, None)):
        if not parts and not ((name == "features" and keep_features) or (name == "logits" and keep_logits)
                              or (name == "labels" and keep_labels)):
            continue
        local = torch.cat(parts) if parts else torch.zeros((0, dim or 0))
        setattr(out, name, _gather_rows(local, idx, n).cpu() if world > 1 else local)
    return out
