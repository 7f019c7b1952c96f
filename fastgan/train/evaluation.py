"""Metrics for training runs: the checkpoint hook of ``fastgan eval`` and the periodic
evaluation inside the training loop (``--metrics fid_classifier,kid_classifier
--metrics-every K``), which also keeps ``checkpoints/best.pt`` by the first metric."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import torch

from .images import generation_batch

__all__ = ["HIGHER_IS_BETTER", "LOWER_IS_BETTER", "is_better", "parse_metric_names", "load_generator_for_eval",
           "TrainingEvaluator"]

# Direction of every metric name fastgan.metrics knows (a test checks the lists cover it).
LOWER_IS_BETTER = frozenset({"fid", "kid", "fid_classifier", "kid_classifier"})
HIGHER_IS_BETTER = frozenset({"is", "precision", "recall", "precision_classifier", "recall_classifier",
                              "classifier_accuracy", "cas"})


def is_better(name: str, value: float, best: Optional[float]) -> bool:
    """True when ``value`` of metric ``name`` beats ``best`` (None: nothing yet). NaN never wins."""
    if value is None or not math.isfinite(value):
        return False
    if best is None or not math.isfinite(best):
        return True
    if name in HIGHER_IS_BETTER:
        return value > best
    if name in LOWER_IS_BETTER:
        return value < best
    raise ValueError(f"metrics: no direction (lower/higher is better) known for {name!r}")


def parse_metric_names(spec) -> list[str]:
    """'fid_classifier, kid_classifier' or a list -> validated names (ValueError names the bad one)."""
    if spec is None:
        return []
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    names = [n for n in names if n]
    if not names:
        return []
    from ..metrics.api import METRICS

    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(METRICS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"metrics: {names} names a metric twice")
    return names


def _idx_root(data: Optional[str], data_format: str) -> tuple[bool, Optional[str]]:
    """(is the run's dataset an IDX folder, its root or None for the default Fashion-MNIST)."""
    if data is None:
        return True, None
    p = Path(data)
    if data_format == "idx":
        return True, str(p)
    if data_format == "auto" and p.is_dir() and any(q.name.startswith("train-images-idx3-ubyte") for q in p.iterdir()):
        return True, str(p)
    return False, None


def load_generator_for_eval(path, device="cpu") -> dict:
    """``fastgan eval``'s checkpoint loader (fastgan.cli hands it to fastgan.metrics.cli.main;
    see fastgan.metrics.sources): a run folder (its newest
    ckpt-*.pt, as ``--resume auto``) or a checkpoint file (best.pt included) -> dict with the
    G_ema generator (eval mode, on ``device``), latent_dim, num_classes (None when
    unconditional), dataset (the IDX root the run trained on, None for Fashion-MNIST or when
    the run used a non-IDX dataset: pass ``--data`` then) and provenance fields.
    Loaded with ``torch.load(weights_only=True)`` via fastgan.train.checkpoint."""
    from . import checkpoint as ck
    from .sample import load_generator

    p = Path(path)
    if p.is_dir():
        p = ck.resolve_resume(str(p), p)
    G, cfg, nc = load_generator(p, weights="ema", device=device)
    is_idx, root = _idx_root(cfg.data, cfg.data_format)
    out = {"generator": G, "latent_dim": int(cfg.z_dim), "num_classes": nc if nc > 0 else None,
           "name": f"{cfg.model} G_ema {p}", "checkpoint": str(p), "model": cfg.model}
    if is_idx:
        out["dataset"] = root
    return out


class TrainingEvaluator:
    """Computes ``cfg.metrics`` of a Trainer's G_ema and tracks the best value of the first.
    Every rank calls :meth:`evaluate` (fastgan.metrics splits feature extraction over ranks)."""

    def __init__(self, trainer) -> None:
        cfg = trainer.cfg
        self.names = parse_metric_names(cfg.metrics)
        self.primary = self.names[0]
        self.trainer = trainer
        is_idx, self.data_root = _idx_root(cfg.data, cfg.data_format)
        src = trainer.source
        real = src.image_tensor()  # a packed .npy: its memory map, read batch by batch
        if real is None:
            raise ValueError("metrics: evaluation during training needs an in-memory dataset (IDX or a packed .npy; "
                             "`fastgan prepare` packs an image folder); or evaluate checkpoints with `fastgan eval`")
        from ..metrics.api import CLASSIFIER_METRICS

        if not is_idx and any(n in CLASSIFIER_METRICS for n in self.names):
            raise ValueError("metrics: the classifier metrics need an IDX dataset (labelled train and test splits); "
                             f"{src.description} is not one")
        if any(n in ("classifier_accuracy", "cas") for n in self.names) and not trainer.conditional:
            raise ValueError("metrics: classifier_accuracy and cas need a conditional model (cgan)")
        from ..metrics.sources import TensorSource

        # a memory-mapped source keeps its sampled fingerprint: hashing every byte (the
        # metrics' default key) would read, and copy, the whole file
        self.real = TensorSource(real, src.labels, name=src.description,
                                 fingerprint=None if src.images is not None else "packed-" + src.fingerprint)
        self.best: Optional[dict] = None  # {"metric", "value", "step"}
        self.needs_classifier = any(n in CLASSIFIER_METRICS for n in self.names)
        self.classifier = None  # (SmallCNN, meta), loaded (or trained and cached) at the first evaluation

    def _classifier(self):
        if self.classifier is None and self.needs_classifier:
            from ..data import load_idx_dataset
            from ..metrics.classifier import load_or_train_classifier

            t = self.trainer
            train, test = load_idx_dataset(self.data_root, "train"), load_idx_dataset(self.data_root, "test")
            # every rank must use the same classifier: rank 0 trains (or loads) it, the others load
            # rank 0's cached file afterwards
            if t.info.is_main:
                torch.manual_seed(t.cfg.seed)  # reproducible training (dropout); inside fork_rng
                self.classifier = load_or_train_classifier(train, test, device=t.device, train_if_missing=True,
                                                           log=t._log)
            if t.info.world > 1:
                import torch.distributed as dist

                dist.barrier()
            if not t.info.is_main:
                self.classifier = load_or_train_classifier(train, test, device=t.device)
        return self.classifier

    def evaluate(self, step: int) -> tuple[dict, float]:
        """({name: value, name_std: std}, seconds); training RNG streams are left untouched."""
        from ..metrics.api import compute_metrics
        from ..metrics.sources import GeneratorSource

        t = self.trainer
        cfg = t.cfg
        source = GeneratorSource(t.G_ema, latent_dim=cfg.z_dim, num_classes=t.num_classes if t.conditional else None,
                                 seed=cfg.seed, name=f"G_ema step {step}",
                                 max_batch=generation_batch(cfg.resolution))
        t0 = time.perf_counter()
        devices = [t.device] if t.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            classifier = self._classifier()
            res = compute_metrics(self.names, source, real_source=self.real, device=t.device,
                                  num_gen=cfg.metrics_num_gen, num_real=cfg.metrics_num_real or None,
                                  data_root=self.data_root, classifier=classifier,
                                  log=t._log)
        values = {}
        for name, r in res.items():
            values[name] = float(r["value"])
            if "std" in r:
                values[f"{name}_std"] = float(r["std"])
        return values, time.perf_counter() - t0

    def improved(self, values: dict, step: int) -> bool:
        v = values.get(self.primary)
        best = self.best["value"] if self.best and self.best.get("metric") == self.primary else None
        if is_better(self.primary, v, best):
            self.best = {"metric": self.primary, "value": float(v), "step": int(step)}
            return True
        return False
