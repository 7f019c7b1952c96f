"""Metric speed: the 2048-dim Frechet distance (symmetric eigendecompositions, float64) vs
the scipy.linalg.sqrtm-based formula of the reference implementations, and classifier-FID
of 10,000 generated Fashion-MNIST samples against cached reference statistics.

    .venv/bin/python -m pytest bench/test_bench_metrics.py --benchmark-columns=median,iqr,min,rounds

Claims checked in the same run: fastgan's Frechet distance >= 5x faster than scipy sqrtm
(medians; the result agrees to 1e-6 relative first), and the classifier-FID of 10,000
samples (reference statistics cached; warm-up excluded) under 30 s. The classifier is the
cached one from `fastgan eval --train-classifier` when present, else random weights of the
same architecture (same cost). FASTGAN_BENCH_FID_DIM / FASTGAN_BENCH_NUM_GEN shrink the work.
"""

import itertools
import os
import statistics
import time

import numpy as np
import pytest
import torch

from fastgan.metrics.frechet import frechet_distance

scipy_linalg = pytest.importorskip("scipy.linalg")

DIM = int(os.environ.get("FASTGAN_BENCH_FID_DIM", "2048"))
NUM_GEN = int(os.environ.get("FASTGAN_BENCH_NUM_GEN", "10000"))
N_SETS = 3


def scipy_fid(mu1, c1, mu2, c2):
    covmean = scipy_linalg.sqrtm(c1.dot(c2))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))


def make_pairs():
    """Covariances like those of real features: from 2*DIM correlated samples each."""
    g = torch.Generator().manual_seed(0)
    pairs = []
    for _ in range(N_SETS):
        mix = torch.randn(DIM, DIM, generator=g, dtype=torch.float64) / DIM ** 0.5
        stats = []
        for shift in (0.0, 0.1):
            x = torch.randn(2 * DIM, DIM, generator=g, dtype=torch.float64) @ mix + shift
            stats += [x.mean(0).numpy(), np.cov(x.numpy(), rowvar=False)]
        pairs.append(tuple(stats))
    return pairs


def test_frechet_2048_vs_scipy_sqrtm(benchmark):
    pairs = make_pairs()
    scipy_times, ours_ref = [], []
    for p in pairs[:2]:
        t = time.perf_counter()
        ref = scipy_fid(*p)
        scipy_times.append(time.perf_counter() - t)
        ours_ref.append(ref)
    for p, ref in zip(pairs, ours_ref):  # correctness before timing
        assert frechet_distance(*p) == pytest.approx(ref, rel=1e-6)
    frechet_distance(*pairs[0])  # warm-up
    cycle = itertools.cycle(pairs)
    benchmark.pedantic(lambda: frechet_distance(*next(cycle)), rounds=3, iterations=1)
    ours = benchmark.stats.stats.median
    speedup = statistics.median(scipy_times) / ours
    benchmark.extra_info.update(scipy_sqrtm_median_s=statistics.median(scipy_times), speedup=speedup, dim=DIM)
    print(f"\nFrechet {DIM}-d: fastgan {ours:.3f} s, scipy sqrtm {statistics.median(scipy_times):.3f} s, {speedup:.1f}x")
    assert speedup >= 5, f"only {speedup:.1f}x faster than scipy sqrtm"


class TinyGenerator(torch.nn.Module):
    def __init__(self, latent=64):
        super().__init__()
        self.fc = torch.nn.Linear(latent, 64 * 7 * 7)
        self.up = torch.nn.Sequential(torch.nn.ConvTranspose2d(64, 32, 4, 2, 1), torch.nn.ReLU(),
                                      torch.nn.ConvTranspose2d(32, 1, 4, 2, 1), torch.nn.Tanh())

    def forward(self, z):
        return self.up(self.fc(z).view(-1, 64, 7, 7))


def test_classifier_fid_10k(benchmark):
    from fastgan.data import load_idx_dataset
    from fastgan.metrics import GeneratorSource, compute_metrics, dataset_source
    from fastgan.metrics.classifier import ClassifierNotTrainedError, SmallCNN, dataset_fingerprint, load_cached_classifier

    try:
        real = dataset_source(None, "train")
    except Exception as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    try:
        clf = load_cached_classifier(dataset_fingerprint(real.images, real.labels))
        which = f"cached (test accuracy {clf[1]['test_accuracy']:.4f})"
    except ClassifierNotTrainedError:
        torch.manual_seed(0)
        clf = (SmallCNN(10).eval(), {"sha256": None, "test_accuracy": None})
        which = "random weights (no cached classifier)"
    torch.manual_seed(0)
    src = GeneratorSource(TinyGenerator().eval(), latent_dim=64, seed=0, name="tiny-random")
    # Warm-up (excluded): computes and caches the reference statistics of the 60k train split.
    t = time.perf_counter()
    first = compute_metrics("fid_classifier", src, real, num_gen=500, classifier=clf)
    ref_s = time.perf_counter() - t
    results = []

    def run():
        results.append(compute_metrics("fid_classifier", src, real, num_gen=NUM_GEN, classifier=clf))

    benchmark.pedantic(run, rounds=3, iterations=1)
    r = results[-1]["fid_classifier"]
    assert r["provenance"]["reference_stats_cached"] is True and r["provenance"]["n_generated"] == NUM_GEN
    assert np.isfinite(r["value"]) and r["value"] > 0
    assert all(x["fid_classifier"]["value"] == r["value"] for x in results)  # deterministic
    med = benchmark.stats.stats.median
    benchmark.extra_info.update(classifier=which, reference_stats_first_s=ref_s, fid_classifier=r["value"])
    print(f"\nclassifier-FID of {NUM_GEN} samples: {med:.2f} s (classifier: {which}; reference stats first {ref_s:.1f} s)")
    assert med < 30.0
