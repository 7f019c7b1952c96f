"""Offline domain classifier for small grayscale datasets (MNIST, Fashion-MNIST).

Where no Inception weights are at hand, a small CNN trained on the dataset's own training
split gives (a) a feature space for a Frechet distance, reported as ``fid_classifier`` and
never as FID (its numbers are not comparable with Inception FID), (b) the accuracy of this
classifier on class-conditional samples (``classifier_accuracy``: do samples of class c look
like class c?), and (c) the Classification Accuracy Score (Ravuri & Vinyals 2019): the same
architecture trained on *generated* samples and tested on the real test split.

The trained classifier is cached in the user's cache directory
(``$XDG_CACHE_HOME/fastgan`` or ``~/.cache/fastgan``), keyed by the fingerprint of the
training split, together with its test accuracy; it is trained once
(``fastgan eval --train-classifier``).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._safe_load import UnloadableFileError, load_weights_only

__all__ = [
    "SmallCNN",
    "cache_dir",
    "dataset_fingerprint",
    "train_classifier",
    "evaluate_classifier",
    "load_or_train_classifier",
    "load_cached_classifier",
    "classifier_cache_path",
    "ClassifierNotTrainedError",
    "to_unit_range",
]

ARCH = "fastgan-smallcnn-v2"
IMAGE_SIZE = 28


class ClassifierNotTrainedError(FileNotFoundError):
    """No cached classifier for this dataset; train it with ``fastgan eval --train-classifier``."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastgan"


def dataset_fingerprint(images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> str:
    """sha256 of the shape, dtype and bytes of the images (and labels): the cache key."""
    h = hashlib.sha256()
    h.update(f"{tuple(images.shape)}|{images.dtype}|".encode())
    h.update(images.contiguous().cpu().numpy().tobytes())
    if labels is not None:
        h.update(f"|{tuple(labels.shape)}|{labels.dtype}|".encode())
        h.update(labels.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def to_unit_range(x: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """uint8 [0, 255] or float [-1, 1] images (N, 1, H, W) -> float32 [-1, 1] at size x size
    (bilinear resize if needed; RGB averaged to gray)."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images: expected (N, 1 or 3, H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 127.5 - 1.0
    elif x.is_floating_point():
        x = x.float()
    else:
        raise TypeError(f"images: expected uint8 or floating point, got {x.dtype}")
    if x.shape[1] == 3:
        x = x.mean(1, keepdim=True)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


class SmallCNN(nn.Module):
    """Two strided conv blocks (28 -> 14 -> 7) and a 128-d hidden layer; the penultimate
    features (after ReLU) are the ``fid_classifier`` feature space. Strided convolutions
    instead of full-resolution ones and pooling keep training at ~1.5 M multiply-adds per
    image, so it trains on two CPU cores in about a minute."""

    num_features = 128

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(1, 32, 5, stride=2, padding=2)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64 * 7 * 7, self.num_features)
        self.fc2 = nn.Linear(self.num_features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = to_unit_range(x).contiguous(memory_format=torch.channels_last)  # faster CPU convs
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        f = self.features(x)
        logits = self.fc2(F.dropout(f, 0.2, self.training))
        return (f, logits) if return_features else logits


@torch.no_grad()
def evaluate_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000,
                        device=None) -> float:
    """Top-1 accuracy on (images, labels)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    correct = 0
    for s in range(0, images.shape[0], batch_size):
        logits = model(images[s : s + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == labels[s : s + batch_size].cpu()).sum())
    return correct / images.shape[0]


def train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: Optional[int] = None, epochs: int = 3,
                     batch_size: int = 128, lr: float = 2e-3, seed: int = 0, device="cpu",
                     log: Optional[Callable[[str], None]] = None) -> SmallCNN:
    """Trains :class:`SmallCNN` (Adam, one-cycle learning rate) on uint8/float images."""
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"labels: {labels.shape[0]} labels for {images.shape[0]} images")
    if labels.dtype != torch.int64:
        raise TypeError(f"labels: expected int64 class indices, got {labels.dtype}")
    num_classes = num_classes or int(labels.max()) + 1
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(num_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = images.shape[0]
    steps = epochs * ((n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    t0 = time.time()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            x, y = images[idx].to(device), labels[idx].to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if log:
            log(f"classifier epoch {epoch + 1}/{epochs}: loss {loss.item():.3f} ({time.time() - t0:.0f} s)")
    model.eval()
    return model


def classifier_cache_path(fingerprint: str) -> Path:
    return cache_dir() / "classifiers" / f"{ARCH}-{fingerprint[:32]}.pt"


def load_cached_classifier(fingerprint: str, device="cpu") -> Tuple[SmallCNN, Dict]:
    """Loads the cached classifier for a training-split fingerprint (weights_only)."""
    path = classifier_cache_path(fingerprint)
    if not path.is_file():
        raise ClassifierNotTrainedError(
            f"no trained classifier for this dataset in {path.parent} (fingerprint {fingerprint[:16]}); "
            "train it once with `fastgan eval --train-classifier` (about a minute on a CPU)"
        )
    try:
        blob = load_weights_only(path, "cached classifier")
    except UnloadableFileError as e:
        raise ClassifierNotTrainedError(f"{e}; retrain with --train-classifier") from None
    meta = blob.get("meta", {}) if isinstance(blob, dict) else {}
    if meta.get("arch") != ARCH or meta.get("train_fingerprint") != fingerprint:
        raise ClassifierNotTrainedError(f"{path}: cached classifier does not match this dataset/architecture; retrain with --train-classifier")
    model = SmallCNN(int(meta["num_classes"]))
    model.load_state_dict(blob["state_dict"])
    meta = dict(meta, path=str(path), sha256=_sha256(path))
    return model.to(device).eval(), meta


def _sha256(path: Path) -> str:
    from .inception import sha256_file

    return sha256_file(path)


def load_or_train_classifier(train, test, device="cpu", train_if_missing: bool = False, retrain: bool = False,
                             epochs: int = 3, seed: int = 0, log: Optional[Callable[[str], None]] = None):
    """Returns (model, meta) for a dataset given as objects with ``images``/``labels``
    (e.g. :func:`fastgan.data.load_idx_dataset` results for the train and test splits).
    ``meta`` holds the test accuracy, fingerprints, the cache path and the file's sha256."""
    fp = dataset_fingerprint(train.images, train.labels)
    if not retrain:
        try:
            return load_cached_classifier(fp, device)
        except ClassifierNotTrainedError:
            if not train_if_missing:
                raise
    t0 = time.time()
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    model = train_classifier(train.images, train.labels, num_classes, epochs=epochs, seed=seed, device=device, log=log)
    acc = evaluate_classifier(model, test.images, test.labels)
    from .. import __version__

    meta = {
        "arch": ARCH,
        "num_classes": num_classes,
        "train_fingerprint": fp,
        "test_fingerprint": dataset_fingerprint(test.images, test.labels),
        "test_accuracy": acc,
        "epochs": epochs,
        "seed": seed,
        "train_seconds": round(time.time() - t0, 1),
        "fastgan_version": __version__,
    }
    path = classifier_cache_path(fp)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "meta": meta}, tmp)
    os.replace(tmp, path)  # atomic: concurrent evaluations never read a half-written file
    if log:
        log(f"classifier test accuracy {acc:.4f}; cached at {path}")
    return load_cached_classifier(fp, device)
