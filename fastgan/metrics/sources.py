"""Where images come from: a generator (callable + latent sampler + optional labels), a
tensor/dataset, or a folder of images. Sources yield batches in memory; nothing is written
to disk.

Batches are numbered; batch ``b`` always holds the same samples (its latents are drawn from
a generator seeded with ``(seed, b)``), so results do not depend on the batch order or on
how batches are split across DDP ranks (rank r takes batches b with b % world == r).

Checkpoints: fastgan.metrics reads none itself (it never imports fastgan.train, whose
checkpoints they are). :func:`generator_from_checkpoint` uses a loader registered with
:func:`register_checkpoint_loader`, else the one it is given (``fastgan eval`` gives it
``fastgan.train.load_generator_for_eval``). Either is called as
``loader(path, device)`` and returns a :class:`GeneratorSource`, or a dict with keys
``generator`` (callable), ``latent_dim`` (int), ``num_classes`` (int or None) and optionally
``dataset`` (the IDX root the model was trained on) and ``name``. For a file it cannot load
(missing, corrupt, not a checkpoint) a loader raises ValueError or a subclass (fastgan.train's
CheckpointError is one): ``fastgan eval`` reports those as one-line errors, anything else as a bug.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple, Union

import torch

__all__ = [
    "GeneratorSource",
    "TensorSource",
    "dataset_source",
    "image_folder_source",
    "generator_from_checkpoint",
    "register_checkpoint_loader",
    "CheckpointLoaderUnavailable",
]

Batch = Tuple[torch.Tensor, Optional[torch.Tensor]]


def _batch_ranges(n: int, batch_size: int, rank: int, world: int):
    if n < 1:
        raise ValueError(f"n: expected >= 1 samples, got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    for b, start in enumerate(range(0, n, batch_size)):
        if b % world == rank:
            yield b, start, min(start + batch_size, n)


class GeneratorSource:
    """Images from ``generator(z)`` or, for conditional models, ``generator(z, labels)``.

    generator: callable returning images (N, C, H, W), float in [-1, 1] (or uint8).
    latent_dim: size of a standard normal latent, or ``z_sampler(n, generator=torch.Generator)``
        returning (n, ...) latents (drawn on the CPU for reproducibility, then moved).
    num_classes: for a conditional model; labels are balanced, ``label_i = i % num_classes``.
    max_batch: the most images one generator call makes (large resolutions: bounds the
        memory of generation); a batch's latents stay the same whatever the value.
    """

    def __init__(self, generator: Callable, latent_dim: Optional[int] = None,
                 z_sampler: Optional[Callable] = None, num_classes: Optional[int] = None,
                 seed: int = 0, name: str = "generator", max_batch: Optional[int] = None):
        if not callable(generator):
            raise TypeError("generator: expected a callable (e.g. an nn.Module)")
        if (latent_dim is None) == (z_sampler is None):
            raise ValueError("GeneratorSource: give exactly one of latent_dim or z_sampler")
        if latent_dim is not None and latent_dim < 1:
            raise ValueError(f"latent_dim: expected >= 1, got {latent_dim}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
        self.generator, self.latent_dim, self.z_sampler = generator, latent_dim, z_sampler
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1 or None, got {max_batch}")
        self.num_classes, self.seed, self.name, self.max_batch = num_classes, seed, name, max_batch

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    def describe(self) -> dict:
        return {"kind": "generator", "name": self.name, "seed": self.seed, "num_classes": self.num_classes}

    def _latents(self, b: int, count: int) -> torch.Tensor:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + b) % (2**63))
        if self.z_sampler is not None:
            return self.z_sampler(count, generator=g)
        return torch.randn(count, self.latent_dim, generator=g)

    @torch.no_grad()
    def batches(self, n: int, batch_size: int, device="cpu", rank: int = 0, world: int = 1) -> Iterator[Tuple[int, torch.Tensor, Optional[torch.Tensor]]]:
        """Yields (first sample index, images, labels or None) for this rank's batches."""
        for b, start, stop in _batch_ranges(n, batch_size, rank, world):
            z_all = self._latents(b, stop - start)
            step = self.max_batch or (stop - start)
            for i in range(0, stop - start, step):  # the batch's latents, in chunks of max_batch
                lo, hi = start + i, min(start + i + step, stop)
                z = z_all[i:i + step].to(device)
                if self.conditional:
                    labels = (torch.arange(lo, hi) % self.num_classes).to(device)
                    images = self.generator(z, labels)
                else:
                    labels = None
                    images = self.generator(z)
                if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] != hi - lo:
                    shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
                    raise ValueError(f"generator: expected images (N={hi - lo}, C, H, W), got {shape}")
                yield lo, images, labels


class TensorSource:
    """Images held in memory (uint8 [0, 255] or float [-1, 1]), with optional labels."""

    def __init__(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None, name: str = "tensor",
                 fingerprint: Optional[str] = None, meta: Optional[dict] = None):
        if images.ndim != 4:
            raise ValueError(f"images: expected (N, C, H, W), got shape {tuple(images.shape)}")
        if labels is not None and labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels: {labels.shape[0]} labels for {images.shape[0]} images")
        self.images, self.labels, self.name = images, labels, name
        self.meta = dict(meta or {})
        self._fingerprint = fingerprint

    def __len__(self):
        return self.images.shape[0]

    @property
    def conditional(self) -> bool:
        return self.labels is not None

    @property
    def num_classes(self) -> Optional[int]:
        return int(self.labels.max()) + 1 if self.labels is not None else None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from .classifier import dataset_fingerprint

            self._fingerprint = dataset_fingerprint(self.images, self.labels)
        return self._fingerprint

    def describe(self) -> dict:
        return dict({"kind": "tensor", "name": self.name, "fingerprint": self.fingerprint, "size": len(self)}, **self.meta)

    def batches(self, n: Optional[int], batch_size: int, device="cpu", rank: int = 0, world: int = 1):
        n = len(self) if n is None else n
        if n > len(self):
            raise ValueError(f"n: asked for {n} images, {self.name} holds {len(self)}")
        for _, start, stop in _batch_ranges(n, batch_size, rank, world):
            labels = self.labels[start:stop].to(device) if self.labels is not None else None
            yield start, self.images[start:stop].to(device), labels


def dataset_source(root: Union[str, os.PathLike, None] = None, split: str = "train") -> TensorSource:
    """An IDX dataset split (default: Fashion-MNIST) as a source."""
    from ..data import load_idx_dataset

    data = load_idx_dataset(root, split)
    root_name = str(Path(data.images_path).parent)
    return TensorSource(data.images, data.labels, name=f"{root_name}:{split}",
                        meta={"split": split, "root": root_name, "num_classes": data.num_classes})


def image_folder_source(folder: Union[str, os.PathLike], grayscale: bool = False) -> TensorSource:
    """All PNG/JPEG images directly in ``folder`` (sorted by name; equal sizes required),
    or a single ``.npy`` uint8 array (N, H, W) / (N, C, H, W). Reading PNG/JPEG needs Pillow."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix == ".npy":
        import numpy as np

        arr = np.load(folder, allow_pickle=False)
        if arr.dtype != np.uint8 or arr.ndim not in (3, 4):
            raise ValueError(f"{folder}: expected a uint8 array (N, H, W) or (N, C, H, W), got {arr.dtype} {arr.shape}")
        t = torch.from_numpy(arr.copy())
        return TensorSource(t.unsqueeze(1) if t.ndim == 3 else t, name=str(folder))
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of images or a .npy file")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise ValueError(f"{folder}: no .png/.jpg images")
    try:
        from PIL import Image
    except ImportError as e:
        raise RuntimeError("reading image folders needs Pillow (pip install pillow); or pass a .npy array") from e
    import numpy as np

    arrs = []
    for p in files:
        with Image.open(p) as im:
            a = np.asarray(im.convert("L" if grayscale else "RGB"))
        arrs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    if len({a.shape for a in arrs}) != 1:
        raise ValueError(f"{folder}: images differ in size")
    return TensorSource(torch.from_numpy(np.stack(arrs)), name=str(folder))


class CheckpointLoaderUnavailable(RuntimeError):
    """No way to turn a checkpoint into a generator: no loader registered or given."""


_checkpoint_loader: Optional[Callable] = None


def register_checkpoint_loader(fn: Optional[Callable]) -> None:
    """Registers ``fn(path, device)`` used by :func:`generator_from_checkpoint` (None resets)."""
    global _checkpoint_loader
    _checkpoint_loader = fn


def generator_from_checkpoint(path: Union[str, os.PathLike], device="cpu",
                              loader: Optional[Callable] = None) -> Tuple[GeneratorSource, dict]:
    """(source, info) for a checkpoint file or run directory; info may name ``dataset``.

    Loads with the loader registered with :func:`register_checkpoint_loader`, else ``loader``
    (e.g. ``fastgan.train.load_generator_for_eval``, what ``fastgan eval`` passes)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint or run directory")
    loader = _checkpoint_loader or loader
    if loader is None:
        raise CheckpointLoaderUnavailable(
            f"cannot load {path}: fastgan.metrics reads no checkpoints itself. Use `fastgan eval`, pass "
            "loader=fastgan.train.load_generator_for_eval, register a loader with "
            "fastgan.metrics.sources.register_checkpoint_loader(fn), or call "
            "fastgan.metrics.compute_metrics with a GeneratorSource."
        )
    out = loader(path, device)
    if isinstance(out, GeneratorSource):
        return out, {}
    if not isinstance(out, dict) or "generator" not in out:
        raise TypeError("checkpoint loader: expected a GeneratorSource or a dict with 'generator' and 'latent_dim'")
    src = GeneratorSource(out["generator"], latent_dim=out.get("latent_dim"), z_sampler=out.get("z_sampler"),
                          num_classes=out.get("num_classes"), name=out.get("name", str(path)))
    return src, {k: v for k, v in out.items() if k not in ("generator", "z_sampler")}
