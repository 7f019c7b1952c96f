"""Datasets for training and a deterministic, resumable stream of batches.

Batches are uint8 on the host; they travel to the device as uint8 (4x fewer bytes), are
converted and normalized to [-1, 1] there, and resized to the model's resolution if needed.
The content of batch ``b`` is a pure function of (seed, b, rank, world size): epoch ``e`` is
a :class:`~torch.utils.data.DistributedSampler` permutation seeded with ``seed`` and
``set_epoch(e)``, and the optional x-flips (``mirror``) come from a generator seeded with
(seed, b, rank, world), so a resumed run only needs the number of batches consumed.

Sources: IDX datasets are held in memory and batched by indexing (no workers). A packed
.npy (``fastgan prepare``) is never loaded whole: like an image folder or zip, it is read
through one :class:`~torch.utils.data.DataLoader` for the whole run (``num_workers``
processes, pinned memory on CUDA): each worker reads only the rows of the batches it is
handed; batches come back in order, so workers change nothing but speed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler


@dataclass
class DataSource:
    images: Optional[torch.Tensor]  # uint8 (N, C, H, W) held in memory, or None
    labels: Optional[torch.Tensor]  # int64 (N,), or None
    dataset: Optional[Dataset]  # map-style: i -> (uint8 (C, H, W), label), when not in memory
    num_classes: int
    fingerprint: str
    description: str
    channels: int
    # another fingerprint this data had in older fastgan versions (computed on demand)
    legacy_fingerprint: Optional[Callable[[], str]] = None

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.dataset)

    def matches(self, fingerprint: Optional[str]) -> bool:
        """Whether a checkpoint's dataset fingerprint names this data."""
        if fingerprint == self.fingerprint:
            return True
        return self.legacy_fingerprint is not None and fingerprint == self.legacy_fingerprint()

    def image_tensor(self) -> Optional[torch.Tensor]:
        """uint8 (N, C, H, W) that slices cheaply: the in-memory images, or a zero-copy view
        of a packed .npy's memory map; None for image folders and zips."""
        if self.images is not None:
            return self.images
        from .folder import PackedDataset, load_packed

        if isinstance(self.dataset, PackedDataset):
            return load_packed(self.dataset.path)[0]
        return None


def _fingerprint_tensor(images: torch.Tensor, labels: Optional[torch.Tensor]) -> str:
    h = hashlib.sha1()
    h.update(str(tuple(images.shape)).encode())
    flat = images.reshape(-1)
    step = max(1, flat.numel() // 65536)
    h.update(flat[::step].contiguous().numpy().tobytes())
    if labels is not None:
        h.update(labels.numpy().tobytes())
    return h.hexdigest()[:16]


def in_memory_source(images: torch.Tensor, labels: Optional[torch.Tensor], num_classes: int, description: str) -> DataSource:
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"images: expected uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    return DataSource(images, labels, None, num_classes, _fingerprint_tensor(images, labels), description, images.shape[1])


def open_source(data: Optional[str], data_format: str = "auto", resolution: Optional[int] = None, strict: bool = False) -> DataSource:
    """IDX folder (default: Fashion-MNIST), image folder, zip of images, or a packed .npy."""
    from .idx import load_idx_dataset

    if data is None:
        d = load_idx_dataset()
        return in_memory_source(d.images, d.labels, d.num_classes, f"Fashion-MNIST ({d.images_path.parent})")
    path = Path(data)
    if not path.exists():
        raise ValueError(f"{path}: no such dataset (file or folder)")
    fmt = data_format
    if fmt == "auto":
        if path.suffix.lower() == ".zip":
            fmt = "zip"
        elif path.suffix.lower() == ".npy":
            fmt = "npy"
        elif path.is_dir() and any(p.name.startswith("train-images-idx3-ubyte") for p in path.iterdir()):
            fmt = "idx"
        else:
            fmt = "folder"
    if fmt == "idx":
        d = load_idx_dataset(path)
        return in_memory_source(d.images, d.labels, d.num_classes, f"IDX {path}")
    from . import folder as _folder

    if fmt == "npy":
        return packed_source(path)
    if resolution is None:
        raise ValueError("resolution: image folders and zips need the target resolution")
    ds = _folder.ImageFolderDataset(path, resolution, strict=strict)
    return DataSource(None, ds.labels_tensor(), ds, ds.num_classes, ds.fingerprint(), f"{fmt} {path} ({len(ds)} images)", ds.channels)


def packed_source(path) -> DataSource:
    """A ``fastgan prepare`` .npy, memory-mapped: opening reads its labels and 16 sample rows
    (the fingerprint), never the whole array."""
    from .folder import PackedDataset

    ds = PackedDataset(path)
    n, c, h, w = ds.shape
    return DataSource(None, ds.labels, ds, ds.num_classes, ds.fingerprint(),
                      f"packed {path} ({n} images {c}x{h}x{w}, memory-mapped)", c,
                      legacy_fingerprint=ds.legacy_fingerprint)


def mirror_mask(seed: int, batch: int, rank: int, world: int, n: int) -> torch.Tensor:
    """Which of batch ``batch``'s ``n`` images are x-flipped: each with probability 0.5, a pure
    function of (seed, batch, rank, world)."""
    rng = np.random.default_rng([seed % 2**64, batch, rank, world, 0x6D6972726F72])  # "mirror"
    return torch.from_numpy(rng.random(n) < 0.5)


def _flip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if bool(mask.any()):
        x[mask] = x[mask].flip(-1)
    return x


class _Schedule:
    """The DataLoader's sampler: (b, indices of batch b) for b = start, start + 1, ... (endless)."""

    def __init__(self, stream: "BatchStream", start: int) -> None:
        self.stream, self.start = stream, start

    def __iter__(self):
        return self.stream._schedule(self.start)


class _BatchFetch(Dataset):
    """Worker side: (b, indices) -> the batch's (uint8 images, labels), x-flipped if asked."""

    def __init__(self, dataset: Dataset, mirror: Optional[tuple[int, int, int]]) -> None:
        self.dataset, self.mirror = dataset, mirror  # mirror: (seed, rank, world) or None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, Sequence[int]]):
        b, idx = item
        if hasattr(self.dataset, "get_batch"):
            x, y = self.dataset.get_batch(idx)
        else:
            items = [self.dataset[i] for i in idx]
            x = torch.stack([it[0] for it in items])
            y = torch.tensor([int(it[1]) for it in items], dtype=torch.int64)
        if self.mirror is not None:
            seed, rank, world = self.mirror
            x = _flip(x, mirror_mask(seed, b, rank, world, x.shape[0]))
        return x, y


class BatchStream:
    """Yields (uint8 images, labels) host batches starting at global batch ``start``;
    ``mirror``: x-flip each image with probability 0.5 (deterministic, see the module doc)."""

    def __init__(self, source: DataSource, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 num_workers: int = 0, pin_memory: bool = False, mirror: bool = False) -> None:
        self.source, self.batch_size, self.seed = source, batch_size, seed
        self.rank, self.world, self.num_workers, self.pin_memory = rank, world, num_workers, pin_memory
        self.mirror = mirror
        self.sampler = DistributedSampler(range(len(source)), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.per_epoch = len(self.sampler) // batch_size
        if self.per_epoch < 1:
            raise ValueError(f"batch_size: {batch_size} is more than the {len(self.sampler)} images per rank "
                             f"in {source.description}")

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        self.sampler.set_epoch(epoch)
        idx = list(iter(self.sampler))
        return [idx[i * self.batch_size:(i + 1) * self.batch_size] for i in range(self.per_epoch)]

    def _schedule(self, start: int) -> Iterator[tuple[int, list[int]]]:
        epoch, offset = divmod(start, self.per_epoch)
        b = start
        while True:
            for idx in self._epoch_batches(epoch)[offset:]:
                yield b, idx
                b += 1
            epoch, offset = epoch + 1, 0

    def iterate(self, start: int = 0) -> Iterator[tuple[torch.Tensor, Optional[torch.Tensor]]]:
        src = self.source
        if src.images is not None:  # in memory: index in this process
            for b, idx in self._schedule(start):
                ix = torch.tensor(idx)
                x = src.images[ix]
                y = src.labels[ix] if src.labels is not None else None
                if self.mirror:
                    x = _flip(x, mirror_mask(self.seed, b, self.rank, self.world, x.shape[0]))
                if self.pin_memory:
                    x = x.pin_memory()
                yield x, y
        else:
            # one loader for the whole run: workers start once and outlive epochs
            # (what persistent_workers does for loaders that are re-iterated)
            fetch = _BatchFetch(src.dataset, (self.seed, self.rank, self.world) if self.mirror else None)
            # a generator of its own: the loader draws its workers' base seed from it, which
            # would otherwise advance the global RNG (the trainer's noise) by one draw
            loader = DataLoader(fetch, sampler=_Schedule(self, start), batch_size=None,
                                num_workers=self.num_workers, pin_memory=self.pin_memory,
                                generator=torch.Generator().manual_seed(self.seed))
            yield from loader


def to_device(x: torch.Tensor, device: torch.device, resolution: int, channels_last: bool = False) -> torch.Tensor:
    """uint8 host batch -> float32 [-1, 1] on ``device`` at ``resolution`` px."""
    x = x.to(device, non_blocking=True).float().div_(127.5).sub_(1.0)
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > resolution)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
