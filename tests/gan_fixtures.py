"""Small datasets and configs the training tests share."""

from __future__ import annotations

import numpy as np

from fastgan.data import DEFAULT_FASHION_MNIST
from fastgan.train.config import make_config
from tests.test_data_idx import write_idx


FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                       "t10k-labels-idx1-ubyte")


def fashion_mnist_installed() -> bool:
    """Debian's dataset-fashion-mnist: its four IDX files (raw or gzipped) where fastgan.data
    looks. Their absence is the one reason a Fashion-MNIST test may skip; files that are there
    but do not parse fail the test."""
    return all((DEFAULT_FASHION_MNIST / s).is_file() or (DEFAULT_FASHION_MNIST / f"{s}.gz").is_file()
               for s in FASHION_MNIST_FILES)


def write_fmnist_like(root, n=48, size=28, classes=4, seed=0):
    """An IDX train split with blobs whose position depends on the class."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 40, (n, size, size))
    for i, c in enumerate(labels):
        r = 4 + 4 * c
        images[i, r:r + 6, 6:20] = 200 + rng.integers(0, 50)
    write_idx(root / "train-images-idx3-ubyte.gz", images, compress=True)
    write_idx(root / "train-labels-idx1-ubyte.gz", labels, compress=True)
    return root


def tiny_config(preset, data, out, **kw):
    base = dict(data=str(data), out=str(out), base_ch=8, batch_size=8, steps=3, sample_every=2, ckpt_every=2,
                log_every=1, sample_n=8, progress=False, tensorboard=False)
    if preset in ("progan", "stylegan2-256"):
        base.update(resolution=32, img_channels=1, z_dim=32, base_ch=64, max_ch=32, phase_kimg=0.01)
    base.update(kw)
    return make_config(preset, overrides=base)


def _global_latents(self, n, pl=False):
    """Trainer._latents drawn for the whole global batch from a generator seeded by the call
    count, each rank taking its strided share (as the data stream's ranks do): the same
    draws for any world size and any micro-batch split."""
    import torch

    self._equiv_calls = getattr(self, "_equiv_calls", 0) + 1
    g = torch.Generator().manual_seed(self._equiv_calls)
    world, rank, cfg = self.info.world, self.info.rank, self.cfg
    total = n * world
    lat = {"z": torch.randn(total, cfg.z_dim, generator=g)}
    if cfg.style_mixing > 0:
        lat["z2"] = torch.randn(total, cfg.z_dim, generator=g)
        cutoff = torch.randint(1, self.G.num_ws, (total,), generator=g)
        mixed = torch.rand(total, generator=g) < cfg.style_mixing
        lat["cutoff"] = torch.where(mixed, cutoff, torch.full_like(cutoff, self.G.num_ws))
    if pl:
        lat["noise"] = torch.randn(total, cfg.img_channels, cfg.resolution, cfg.resolution, generator=g)
    return {k: v[rank::world].to(self.device) for k, v in lat.items()}


def split_independent_randomness(setattr_fn=None):
    """For batch-split equivalence tests: the trainer's per-sample draws come from
    :func:`_global_latents` and G's per-pixel noise is off (it is drawn per forward, so its
    values depend on the split). ``setattr_fn``: pytest's monkeypatch.setattr, or None to
    patch for good (a spawned worker)."""
    from fastgan.nn.modulated import ModulatedConv2d
    from fastgan.train.loop import Trainer

    setattr_fn = setattr_fn or setattr
    setattr_fn(Trainer, "_latents", _global_latents)
    setattr_fn(ModulatedConv2d, "_noise", lambda self, y: None)
