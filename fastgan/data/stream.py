"""Datasets for training and a deterministic, resumable stream of batches.

Batches are uint8 on the host; they travel to the device as uint8 (4x fewer bytes), are
converted and normalized to [-1, 1] there, and resized to the model's resolution if needed.
The order of batch ``b`` is a pure function of (seed, b, rank, world size): epoch ``e`` is
a :class:`~torch.utils.data.DistributedSampler` permutation seeded with ``seed`` and
``set_epoch(e)``, so a resumed run only needs the number of batches consumed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

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

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.dataset)


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
        images, labels, num_classes = _folder.load_packed(path)
        return in_memory_source(images, labels, num_classes, f"packed {path}")
    if resolution is None:
        raise ValueError("resolution: image folders and zips need the target resolution")
    ds = _folder.ImageFolderDataset(path, resolution, strict=strict)
    return DataSource(None, ds.labels_tensor(), ds, ds.num_classes, ds.fingerprint(), f"{fmt} {path} ({len(ds)} images)", ds.channels)


class BatchStream:
    """Yields (uint8 images, labels) host batches starting at global batch ``start``."""

    def __init__(self, source: DataSource, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 num_workers: int = 0, pin_memory: bool = False) -> None:
        self.source, self.batch_size, self.seed = source, batch_size, seed
        self.rank, self.world, self.num_workers, self.pin_memory = rank, world, num_workers, pin_memory
        self.sampler = DistributedSampler(range(len(source)), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.per_epoch = len(self.sampler) // batch_size
        if self.per_epoch < 1:
            raise ValueError(f"batch_size: {batch_size} is more than the {len(self.sampler)} images per rank "
                             f"in {source.description}")

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        self.sampler.set_epoch(epoch)
        idx = list(iter(self.sampler))
        return [idx[i * self.batch_size:(i + 1) * self.batch_size] for i in range(self.per_epoch)]

    def iterate(self, start: int = 0) -> Iterator[tuple[torch.Tensor, Optional[torch.Tensor]]]:
        epoch, offset = divmod(start, self.per_epoch)
        src = self.source
        while True:
            batches = self._epoch_batches(epoch)[offset:]
            if src.images is not None:
                for b in batches:
                    ix = torch.tensor(b)
                    x = src.images[ix]
                    y = src.labels[ix] if src.labels is not None else None
                    if self.pin_memory:
                        x = x.pin_memory()
                    yield x, y
            else:
                loader = DataLoader(src.dataset, batch_sampler=batches, num_workers=self.num_workers,
                                    pin_memory=self.pin_memory, persistent_workers=False)
                for x, y in loader:
                    yield x, y
            epoch, offset = epoch + 1, 0


def to_device(x: torch.Tensor, device: torch.device, resolution: int, channels_last: bool = False) -> torch.Tensor:
    """uint8 host batch -> float32 [-1, 1] on ``device`` at ``resolution`` px."""
    x = x.to(device, non_blocking=True).float().div_(127.5).sub_(1.0)
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > resolution)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
