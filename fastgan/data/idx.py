"""IDX files, the MNIST format (gzipped or raw): MNIST and Fashion-MNIST.

The IDX header is two zero bytes, a type code (0x08 = unsigned byte, the only type these
datasets use), the number of dimensions, then one big-endian uint32 per dimension. Every
file is validated: magic number, dimensions, and that the payload has exactly the bytes the
header promises. A bad file raises :class:`IDXError` naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

DEFAULT_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}
_UBYTE = 0x08


class IDXError(ValueError):
    """A missing, corrupt or inconsistent IDX file."""


def _open(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_idx(path: Union[str, os.PathLike], expect_ndim: Optional[int] = None) -> np.ndarray:
    """Reads one IDX file (raw or gzip) into a uint8 array of the header's shape."""
    path = Path(path)
    if not path.is_file():
        raise IDXError(f"{path}: no such file")
    try:
        with _open(path) as fh:
            header = fh.read(4)
            if len(header) < 4:
                raise IDXError(f"{path}: truncated header ({len(header)} of 4 bytes)")
            zero, dtype, ndim = struct.unpack(">HBB", header)
            if zero != 0:
                raise IDXError(f"{path}: bad magic number 0x{header.hex()} (not an IDX file)")
            if dtype != _UBYTE:
                raise IDXError(f"{path}: element type 0x{dtype:02x} is not unsigned byte (0x08)")
            if ndim < 1 or (expect_ndim is not None and ndim != expect_ndim):
                want = f", expected {expect_ndim}" if expect_ndim is not None else ""
                raise IDXError(f"{path}: {ndim} dimensions{want}")
            dims_raw = fh.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise IDXError(f"{path}: truncated header (dimension sizes)")
            shape = struct.unpack(f">{ndim}I", dims_raw)
            expected = int(np.prod(shape, dtype=np.int64))
            data = fh.read(expected + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise IDXError(f"{path}: unreadable ({e})") from e
    if len(data) < expected:
        raise IDXError(f"{path}: truncated: header promises {expected} bytes of data for shape {shape}, file has {len(data)}")
    if len(data) > expected:
        raise IDXError(f"{path}: trailing bytes after the {expected} bytes of data for shape {shape}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    raise IDXError(f"{root}: no {stem}[.gz] file (expected the MNIST file names)")


@dataclass
class IDXData:
    images: torch.Tensor  # uint8 (N, 1, H, W)
    labels: torch.Tensor  # int64 (N,)
    num_classes: int
    images_path: Path
    labels_path: Path


def load_idx_pair(images_path: Union[str, os.PathLike], labels_path: Union[str, os.PathLike]) -> IDXData:
    """Loads an images file (N, H, W) and a labels file (N,) and checks they agree."""
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = read_idx(images_path, expect_ndim=3)
    labels = read_idx(labels_path, expect_ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise IDXError(f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images in {images_path}")
    if images.shape[0] == 0:
        raise IDXError(f"{images_path}: holds no images")
    num_classes = int(labels.max()) + 1
    return IDXData(
        images=torch.from_numpy(images.copy()).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        num_classes=num_classes,
        images_path=images_path,
        labels_path=labels_path,
    )


def load_idx_dataset(root: Union[str, os.PathLike, None] = None, split: str = "train") -> IDXData:
    """MNIST-layout folder (``train-images-idx3-ubyte[.gz]`` ...); default: Fashion-MNIST
    from Debian's ``dataset-fashion-mnist`` package."""
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    root = Path(root) if root is not None else DEFAULT_FASHION_MNIST
    if not root.is_dir():
        hint = " (install it: apt-get install dataset-fashion-mnist)" if root == DEFAULT_FASHION_MNIST else ""
        raise IDXError(f"{root}: no such dataset folder{hint}")
    prefix = _SPLIT_PREFIX[split]
    return load_idx_pair(_find(root, f"{prefix}-images-idx3-ubyte"), _find(root, f"{prefix}-labels-idx1-ubyte"))
