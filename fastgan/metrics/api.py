"""``compute_metrics``: one call from a generator (and a reference dataset) to scores with
provenance. Used by ``fastgan eval`` and by the training loop.

Metric names
  Inception space (needs the FID Inception weights file; see fastgan.metrics.inception):
    fid, kid, is, precision, recall
  Offline classifier space (a small CNN trained on the dataset; fastgan.metrics.classifier):
    fid_classifier, kid_classifier, precision_classifier, recall_classifier,
    classifier_accuracy (conditional models), cas (conditional models)

Every result is ``{"value": float, ["std": float,] "provenance": {...}}``; the provenance names
the backbone and the sha256 of its weights, the number of generated and real samples, the
reference split and its fingerprint, the resize method, the fastgan version and the seed.
Reference statistics (and, for KID and precision/recall, reference features) are cached per
backbone, weights and dataset fingerprint in the user's cache dir, so the real side is
computed once.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, Iterable, Optional, Sequence, Union

import torch

from .._safe_load import UnloadableFileError, load_weights_only
from .classifier import (
    ARCH as CLASSIFIER_ARCH,
    SmallCNN,
    cache_dir,
    evaluate_classifier,
    load_or_train_classifier,
    train_classifier,
)
from .features import Backbone, ExtractResult, dist_info, extract
from .frechet import FeatureStats, frechet_distance
from .inception_score import inception_score
from .kid import kernel_inception_distance
from .precision_recall import precision_recall
from .sources import GeneratorSource, TensorSource, dataset_source

__all__ = ["compute_metrics", "METRICS", "inception_backbone", "classifier_backbone", "reference_features"]

INCEPTION_METRICS = ("fid", "kid", "is", "precision", "recall")
CLASSIFIER_METRICS = ("fid_classifier", "kid_classifier", "precision_classifier", "recall_classifier",
                      "classifier_accuracy", "cas")
METRICS = INCEPTION_METRICS + CLASSIFIER_METRICS


def inception_backbone(weights=None, device="cpu") -> Backbone:
    from .inception import RESIZE_METHOD, load_fid_inception

    model, sha = load_fid_inception(weights, device)

    def fn(x):
        return model(x.to(device), return_logits=True)

    return Backbone("inception-v3-fid (pt_inception-2015-12-05)", fn, 2048, sha, RESIZE_METHOD,
                    {"weights_file": str(weights or os.environ.get("FASTGAN_INCEPTION_WEIGHTS"))})


def classifier_backbone(model: SmallCNN, meta: dict, device="cpu") -> Backbone:
    model = model.to(device).eval()

    def fn(x):
        return model(x.to(device), return_features=True)

    return Backbone(f"{CLASSIFIER_ARCH} (classifier penultimate layer, {model.num_features}-d)", fn,
                    model.num_features, meta.get("sha256"), "bilinear to 28x28 only if the size differs",
                    {"classifier_test_accuracy": meta.get("test_accuracy"),
                     "classifier_train_fingerprint": meta.get("train_fingerprint")})


def _ref_cache_path(backbone: Backbone, real: TensorSource, n_real: int):
    tag = "".join(c if c.isalnum() else "-" for c in backbone.name.split(" ")[0])
    sha = (backbone.weights_sha256 or "noweights")[:16]
    return cache_dir() / "refstats" / f"{tag}-{sha}-{real.fingerprint[:32]}-n{n_real}.pt"


def reference_features(backbone: Backbone, real: TensorSource, n_real: int, batch_size: int, device,
                       need_features: bool, use_cache: bool = True, log=None):
    """(FeatureStats-like (mu, cov, n), features or None) for the real side, cached."""
    path = _ref_cache_path(backbone, real, n_real)
    if use_cache and path.is_file():
        try:
            blob = load_weights_only(path, "reference statistics cache")
        except UnloadableFileError as e:  # a damaged cache file: recompute and overwrite it
            blob = {}
            if log:
                log(f"{e}: recomputing")
        if blob and (not need_features or blob.get("features") is not None):
            return blob, blob.get("features"), True
    t0 = time.time()
    res = extract(backbone, real, n_real, batch_size, device, keep_features=need_features)
    mu, cov = res.stats.mean_cov()
    blob = {"mu": mu.cpu(), "cov": cov.cpu(), "n": res.n, "features": res.features,
            "source": real.describe(), "backbone": backbone.provenance()}
    rank, _ = dist_info()
    if use_cache and rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(blob, tmp)
        os.replace(tmp, path)
        if log:
            log(f"reference statistics for {real.name} ({res.n} images, {time.time() - t0:.1f} s) cached at {path}")
    return blob, res.features, False


def _version():
    from .. import __version__

    return __version__


def compute_metrics(
    names: Union[str, Sequence[str]],
    generator_source: GeneratorSource,
    real_source: Optional[TensorSource] = None,
    device: Union[str, torch.device] = "cpu",
    num_gen: int = 10000,
    num_real: Optional[int] = None,
    batch_size: int = 250,
    data_root=None,
    reference_split: str = "train",
    inception_weights=None,
    classifier=None,
    train_classifier_if_missing: bool = False,
    use_cache: bool = True,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    pr_k: int = 3,
    cas_epochs: int = 2,
    log: Optional[Callable[[str], None]] = None,
) -> Dict[str, dict]:
    """Computes the named metrics of ``generator_source`` against ``real_source`` (default:
    the IDX dataset at ``data_root``, split ``reference_split``; all of it unless
    ``num_real``). ``classifier``: (SmallCNN, meta) to use instead of the cached one."""
    if isinstance(names, str):
        names = [s.strip() for s in names.split(",") if s.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise ValueError(f"metrics: unknown {unknown or names}; choose from {', '.join(METRICS)}")
    device = torch.device(device)
    rank, world = dist_info()
    if real_source is None:
        real_source = dataset_source(data_root, reference_split)
    n_real = len(real_source) if num_real is None else min(num_real, len(real_source))
    common = {
        "n_generated": num_gen,
        "n_real": n_real,
        "reference": real_source.describe(),
        "generator": generator_source.describe(),
        "fastgan_version": _version(),
        "torch_version": torch.__version__,
        "device": str(device),
        "world_size": world,
    }
    results: Dict[str, dict] = {}

    for space, members in (("inception", INCEPTION_METRICS), ("classifier", CLASSIFIER_METRICS)):
        wanted = [m for m in names if m in members]
        if not wanted:
            continue
        t0 = time.time()
        meta = {}
        if space == "inception":
            backbone = inception_backbone(inception_weights, device)
        else:
            if classifier is None:
                from ..data import load_idx_dataset

                train, test = load_idx_dataset(data_root, "train"), load_idx_dataset(data_root, "test")
                classifier = load_or_train_classifier(train, test, device=device,
                                                      train_if_missing=train_classifier_if_missing, log=log)
            model, meta = classifier
            backbone = classifier_backbone(model, meta, device)
        sfx = "" if space == "inception" else "_classifier"
        need_feats = any(m in wanted for m in (f"kid{sfx}", f"precision{sfx}", f"recall{sfx}"))
        need_logits = "is" in wanted or "classifier_accuracy" in wanted
        need_labels = "classifier_accuracy" in wanted
        if need_labels and not generator_source.conditional:
            raise ValueError("classifier_accuracy: needs a conditional generator (num_classes)")
        dist_metrics = [m for m in wanted if m not in ("is", "classifier_accuracy", "cas")]
        gen = extract(backbone, generator_source, num_gen, batch_size, device,
                      keep_features=need_feats, keep_logits=need_logits, keep_labels=need_labels)
        t_gen = time.time() - t0
        prov = dict(common, **backbone.provenance())
        if dist_metrics:
            ref, ref_feats, cached = reference_features(backbone, real_source, n_real, batch_size, device, need_feats,
                                                        use_cache, log)
            prov["reference_stats_cached"] = cached
            mu_g, cov_g = gen.stats.mean_cov()
            if f"fid{sfx}" in wanted:
                results[f"fid{sfx}"] = {"value": frechet_distance(mu_g, cov_g, ref["mu"], ref["cov"]), "provenance": prov}
            if f"kid{sfx}" in wanted:
                m, s = kernel_inception_distance(gen.features, ref_feats, kid_subsets, kid_subset_size)
                results[f"kid{sfx}"] = {"value": m, "std": s, "provenance": dict(
                    prov, kid_subsets=kid_subsets, kid_subset_size=min(kid_subset_size, num_gen, n_real),
                    kernel="(x.y/d + 1)^3")}
            if f"precision{sfx}" in wanted or f"recall{sfx}" in wanted:
                p, r = precision_recall(ref_feats, gen.features, k=pr_k)
                for key, val in ((f"precision{sfx}", p), (f"recall{sfx}", r)):
                    if key in wanted:
                        results[key] = {"value": val, "provenance": dict(prov, k=pr_k)}
        if "is" in wanted:
            m, s = inception_score(torch.softmax(gen.logits.double(), 1), is_splits)
            results["is"] = {"value": m, "std": s, "provenance": dict(prov, n_real=0, splits=is_splits,
                                                                      softmax_over="all 1008 logits")}
        if "classifier_accuracy" in wanted:
            acc = float((gen.logits.argmax(1) == gen.labels).double().mean())
            results["classifier_accuracy"] = {"value": acc, "provenance": dict(prov, n_real=0)}
        if "cas" in wanted:
            results["cas"] = _cas(generator_source, num_gen, batch_size, device, data_root, classifier, cas_epochs,
                                  dict(prov))
        if log:
            log(f"{space} metrics {', '.join(wanted)}: {time.time() - t0:.1f} s (generated side {t_gen:.1f} s)")
    return {m: results[m] for m in names if m in results}


def _cas(source: GeneratorSource, n: int, batch_size: int, device, data_root, classifier, epochs: int, prov: dict):
    """Classification Accuracy Score: train on generated samples, test on the real test split."""
    from ..data import load_idx_dataset
    from .classifier import dataset_fingerprint

    if not source.conditional:
        raise ValueError("cas: needs a conditional generator (num_classes)")
    rank, world = dist_info()
    images, labels = [], []
    for _, x, y in source.batches(n, batch_size, device=device):  # every rank: same samples
        images.append(x.float().cpu() if x.dtype != torch.uint8 else x.cpu())
        labels.append(y.cpu())
    images, labels = torch.cat(images), torch.cat(labels)
    model = train_classifier(images, labels, source.num_classes, epochs=epochs, seed=0, device=device)
    test = load_idx_dataset(data_root, "test")
    acc = evaluate_classifier(model, test.images, test.labels)
    prov.update({"n_real": test.images.shape[0], "cas_train_samples": n, "cas_epochs": epochs,
                 "cas_arch": CLASSIFIER_ARCH, "test_split_fingerprint": dataset_fingerprint(test.images, test.labels),
                 "real_data_classifier_test_accuracy": (classifier[1].get("test_accuracy") if classifier else None)})
    return {"value": acc, "provenance": prov}
