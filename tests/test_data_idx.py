import gzip
import struct

import numpy as np
import pytest
import torch

from fastgan.data import DEFAULT_FASHION_MNIST, IDXError, load_idx_dataset, load_idx_pair, read_idx


def write_idx(path, array, compress=False, dtype_code=0x08, truncate=0, extra=b""):
    header = struct.pack(">HBB", 0, dtype_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    payload = payload[: len(payload) - truncate] + extra
    with (gzip.open if compress else open)(path, "wb") as fh:
        fh.write(payload)
    return path


def make_split(root, prefix, n=7, h=5, w=4, compress=True):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, h, w))
    labels = rng.integers(0, 10, (n,))
    labels[0] = 9
    ext = ".gz" if compress else ""
    write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", images, compress)
    write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", labels, compress)
    return images, labels


@pytest.mark.parametrize("compress", [True, False])
def test_roundtrip(tmp_path, compress):
    images, labels = make_split(tmp_path, "train", compress=compress)
    data = load_idx_dataset(tmp_path, "train")
    assert data.images.dtype == torch.uint8 and data.images.shape == (7, 1, 5, 4)
    assert torch.equal(data.images[:, 0], torch.from_numpy(images.astype(np.uint8)))
    assert torch.equal(data.labels, torch.from_numpy(labels))
    assert data.num_classes == 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(truncate=3), "truncated"),
        (dict(extra=b"\x00"), "trailing bytes"),
        (dict(dtype_code=0x0D), "not unsigned byte"),
    ],
)
def test_corrupt_files_name_file_and_problem(tmp_path, kwargs, message):
    path = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((2, 3, 3)), **kwargs)
    with pytest.raises(IDXError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_bad_magic_and_short_header(tmp_path):
    (tmp_path / "a").write_bytes(b"\x01\x02\x08\x03" + b"\x00" * 20)
    with pytest.raises(IDXError, match="bad magic"):
        read_idx(tmp_path / "a")
    (tmp_path / "b").write_bytes(b"\x00\x00")
    with pytest.raises(IDXError, match="truncated header"):
        read_idx(tmp_path / "b")
    with gzip.open(tmp_path / "c.gz", "wb") as fh:
        fh.write(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01")
    with pytest.raises(IDXError, match="truncated"):
        read_idx(tmp_path / "c.gz")
    (tmp_path / "d.gz").write_bytes(b"\x1f\x8b" + b"junk" * 4)
    with pytest.raises(IDXError, match="unreadable"):
        read_idx(tmp_path / "d.gz")


def test_mismatched_counts_and_dims(tmp_path):
    write_idx(tmp_path / "i", np.zeros((3, 2, 2)))
    write_idx(tmp_path / "l", np.zeros((4,)))
    with pytest.raises(IDXError, match="4 labels for 3 images"):
        load_idx_pair(tmp_path / "i", tmp_path / "l")
    with pytest.raises(IDXError, match="dimensions, expected 3"):
        load_idx_pair(tmp_path / "l", tmp_path / "l")


def test_missing(tmp_path):
    with pytest.raises(IDXError, match="no train-images"):
        load_idx_dataset(tmp_path, "train")
    with pytest.raises(IDXError, match="no such dataset folder"):
        load_idx_dataset(tmp_path / "nope")
    with pytest.raises(ValueError, match="split"):
        load_idx_dataset(tmp_path, "val")


@pytest.mark.skipif(not DEFAULT_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian():
    test = load_idx_dataset(split="test")
    assert test.images.shape == (10000, 1, 28, 28) and test.num_classes == 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
