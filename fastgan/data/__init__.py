"""Datasets: IDX (MNIST / Fashion-MNIST) files."""

from .idx import DEFAULT_FASHION_MNIST, FASHION_MNIST_CLASSES, IDXData, IDXError, load_idx_dataset, load_idx_pair, read_idx

__all__ = [
    "DEFAULT_FASHION_MNIST",
    "FASHION_MNIST_CLASSES",
    "IDXData",
    "IDXError",
    "load_idx_dataset",
    "load_idx_pair",
    "read_idx",
]
