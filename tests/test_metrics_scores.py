"""Frechet distance, streaming statistics, KID, IS and precision/recall against direct
formulas and scipy."""

import math

import numpy as np
import pytest
import scipy.linalg as scipy_linalg  # a test dependency (make setup installs it): missing is a failure
import torch

from fastgan.metrics.frechet import FeatureStats, frechet_distance, sqrtm_psd
from fastgan.metrics.inception_score import inception_score
from fastgan.metrics.kid import kernel_inception_distance, polynomial_mmd2_unbiased
from fastgan.metrics.precision_recall import knn_radii, precision_recall


def scipy_fid(mu1, c1, mu2, c2):
    """The reference implementations' formula: scipy.linalg.sqrtm of the product."""
    covmean = scipy_linalg.sqrtm(c1.dot(c2))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))


def random_spd(rng, d, n=None, scale=1.0):
    n = n or 2 * d
    a = rng.standard_normal((n, d)) * scale
    return np.cov(a, rowvar=False)


@pytest.mark.parametrize("d", [2, 17, 64, 200])
def test_frechet_matches_scipy_random(d):
    rng = np.random.default_rng(d)
    for trial in range(3):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d) * 0.5
        c1 = random_spd(rng, d)
        c2 = random_spd(rng, d, scale=rng.uniform(0.5, 2.0))
        ref = scipy_fid(mu1, c1, mu2, c2)
        got = frechet_distance(mu1, c1, mu2, c2)
        assert got == pytest.approx(ref, rel=1e-6), (d, trial)


@pytest.mark.parametrize("d,rank", [(64, 10), (128, 127), (100, 1)])
def test_frechet_nearly_singular(d, rank):
    # Rank-deficient covariances (fewer samples than dimensions) plus a tiny ridge: scipy's
    # sqrtm is itself inaccurate here (the product is nearly defective), so compare with a
    # tolerance relative to the scale of the terms, tr(C1) + tr(C2).
    rng = np.random.default_rng(rank)
    for ridge in (0.0, 1e-12, 1e-8):
        c1 = random_spd(rng, d, n=rank + 1) + ridge * np.eye(d)
        c2 = random_spd(rng, d, n=rank + 1) + ridge * np.eye(d)
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        with np.errstate(all="ignore"):
            ref = scipy_fid(mu1, c1, mu2, c2)
        got = frechet_distance(mu1, c1, mu2, c2)
        scale = np.trace(c1) + np.trace(c2)
        assert math.isfinite(got) and got >= 0
        assert abs(got - ref) <= 1e-6 * scale, (ridge, got, ref)


def test_frechet_exact_cases_singular():
    # Commuting covariances (a shared eigenbasis): d = |dmu|^2 + sum (sqrt(a) - sqrt(b))^2,
    # exact even with zero eigenvalues, where sqrtm-based code loses accuracy.
    rng = np.random.default_rng(0)
    d = 50
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a = rng.uniform(0, 2, d); a[:20] = 0
    b = rng.uniform(0, 2, d); b[10:30] = 0
    c1, c2 = (q * a) @ q.T, (q * b) @ q.T
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    exact = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    # sqrt is not Lipschitz at 0: round-off of 1e-16 in a zero eigenvalue becomes 1e-8 in
    # its square root, so ~20 zero eigenvalues allow a few 1e-7 absolute.
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(exact, rel=1e-8)
    # Identical inputs: exactly the mean term, never negative.
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(mu1, c1, mu1, c1) >= 0.0


def test_frechet_never_complex_or_negative_and_devices():
    rng = np.random.default_rng(1)
    d = 32
    c = random_spd(rng, d, n=5)  # rank 4
    mu = rng.standard_normal(d)
    for _ in range(5):
        v = frechet_distance(mu, c, mu, c + 1e-15 * rng.standard_normal((d, d)))
        assert isinstance(v, float) and v >= 0.0 and v < 1e-6
    t = torch.from_numpy(c).float()
    assert frechet_distance(torch.from_numpy(mu), t, torch.from_numpy(mu), t) < 1e-6
    if torch.cuda.is_available():
        assert frechet_distance(mu, c, mu * 0, c, device="cuda") == pytest.approx(float((mu ** 2).sum()), rel=1e-9)


def test_frechet_bad_input():
    with pytest.raises(ValueError, match="cov2"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
    with pytest.raises(ValueError, match="mu2"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.zeros(3), np.full((3, 3), np.nan), np.zeros(3), np.eye(3))


def test_sqrtm_psd():
    rng = np.random.default_rng(2)
    c = torch.from_numpy(random_spd(rng, 20))
    s = sqrtm_psd(c)
    torch.testing.assert_close(s @ s, c, rtol=1e-10, atol=1e-12)


def test_feature_stats_streaming_matches_numpy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 12, generator=g) * 3 + 5
    st = FeatureStats()
    for chunk in torch.split(x, 77):
        st.update(chunk)
    mu, cov = st.mean_cov()
    assert st.n == 1000 and mu.dtype == torch.float64
    np.testing.assert_allclose(mu.numpy(), x.double().mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.cov(x.double().numpy(), rowvar=False), rtol=1e-9, atol=1e-12)
    a, b = FeatureStats().update(x[:300]), FeatureStats().update(x[300:])
    mu2, cov2 = a.merge(b).mean_cov()
    torch.testing.assert_close(mu2, mu)
    torch.testing.assert_close(cov2, cov)
    with pytest.raises(ValueError, match="features"):
        st.update(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats().update(torch.zeros(1, 3)).mean_cov()


def direct_mmd2(x, y):
    m, d = x.shape
    k = lambda a, b: (float(np.dot(a, b)) / d + 1) ** 3
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return sxx / (m * (m - 1)) + syy / (m * (m - 1)) - 2 * sxy / m ** 2


def test_kid_direct_formula():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((12, 5)), rng.standard_normal((12, 5)) + 0.3
    got = float(polynomial_mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y)))
    assert got == pytest.approx(direct_mmd2(x, y), rel=1e-10)
    # Subsets: with subset_size >= N and one subset, KID is the full-set estimate.
    mean, std = kernel_inception_distance(torch.from_numpy(x), torch.from_numpy(y), num_subsets=1, subset_size=100)
    assert mean == pytest.approx(direct_mmd2(x, y), rel=1e-10) and std == 0.0
    # Several subsets: mean and std of the per-subset direct estimates (same sampling order).
    fx, fy = torch.from_numpy(x), torch.from_numpy(y)
    mean, std = kernel_inception_distance(fx, fy, num_subsets=4, subset_size=6, seed=7)
    g = torch.Generator().manual_seed(7)
    vals = []
    for _ in range(4):
        i1, i2 = torch.randperm(12, generator=g)[:6], torch.randperm(12, generator=g)[:6]
        vals.append(direct_mmd2(x[i1.numpy()], y[i2.numpy()]))
    assert mean == pytest.approx(np.mean(vals), rel=1e-10)
    assert std == pytest.approx(np.std(vals, ddof=1), rel=1e-8)
    with pytest.raises(ValueError, match="feats1"):
        kernel_inception_distance(fx, fx[:, :3])


def test_inception_score_known_answers():
    c, n = 10, 1000
    onehot = torch.eye(c).repeat(n // c, 1)  # every split holds each class equally often
    mean, std = inception_score(onehot, splits=10)
    assert mean == pytest.approx(c, rel=1e-12) and std == pytest.approx(0.0, abs=1e-9)
    # All samples confidently one class: IS = 1.
    mean, _ = inception_score(torch.eye(c)[torch.zeros(n, dtype=torch.long)], splits=10)
    assert mean == pytest.approx(1.0)
    # Uniform predictions: IS = 1.
    assert inception_score(torch.full((n, c), 1.0 / c))[0] == pytest.approx(1.0)
    # Mixture: each sample is (1-e) on its class, e/(c-1) elsewhere; balanced classes:
    # KL = sum p log p - sum p log(1/c) = log c - H(p).
    e = 0.2
    p = torch.full((c, c), e / (c - 1), dtype=torch.float64); p.fill_diagonal_(1 - e)
    h = -(1 - e) * math.log(1 - e) - e * math.log(e / (c - 1))
    assert inception_score(p.repeat(n // c, 1))[0] == pytest.approx(math.exp(math.log(c) - h), rel=1e-10)
    with pytest.raises(ValueError, match="probs"):
        inception_score(torch.randn(100, 10))


def brute_radii(x, k):
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    return np.sort(d, axis=1)[:, k]


def test_precision_recall_brute_force():
    rng = np.random.default_rng(4)
    real = rng.standard_normal((150, 6))
    fake = rng.standard_normal((130, 6)) + 1.0
    r = knn_radii(torch.from_numpy(real), k=3, block=37).numpy()
    np.testing.assert_allclose(r, brute_radii(real, 3), rtol=1e-9)
    fr = brute_radii(fake, 3)
    dfr = np.linalg.norm(fake[:, None] - real[None], axis=-1)
    p_ref = np.mean((dfr <= r[None]).any(1))
    r_ref = np.mean((dfr.T <= fr[None]).any(1))
    p, rc = precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=3, block=50)
    assert p == pytest.approx(p_ref) and rc == pytest.approx(r_ref)
    assert 0 < p < 1 and 0 < rc < 1


def test_identical_sets_zero_and_monotone_in_noise():
    g = torch.Generator().manual_seed(5)
    real = torch.randn(1000, 16, generator=g, dtype=torch.float64)
    noise = torch.randn(1000, 16, generator=g, dtype=torch.float64)
    fids, kids, precs = [], [], []
    for sigma in (0.0, 0.5, 1.0, 2.0):
        fake = real + sigma * noise
        s1, s2 = FeatureStats.from_features(real), FeatureStats.from_features(fake)
        fids.append(frechet_distance(*s1.mean_cov(), *s2.mean_cov()))
        kids.append(kernel_inception_distance(real, fake, num_subsets=20, subset_size=500)[0])
        precs.append(precision_recall(real[:500], fake[:500])[0])
    assert fids[0] == pytest.approx(0, abs=1e-9)
    # Subsets drawn independently from one finite set share ~m^2/N points, whose k(x, x)
    # enter the cross term: a known O(1/N) bias, -2 (E k(x,x) - E k(x,y)) / N.
    kxx = float(((real * real).sum(1) / 16 + 1).pow(3).mean())
    assert abs(kids[0]) < 2 * kxx / real.shape[0]
    assert precs[0] == 1.0
    assert all(a < b for a, b in zip(fids, fids[1:])), fids
    assert all(a < b for a, b in zip(kids, kids[1:])), kids
    assert all(a >= b for a, b in zip(precs, precs[1:])) and precs[-1] < 0.5, precs


def test_cholesky_and_eigh_paths_agree():
    from fastgan.metrics.frechet import trace_sqrt_product

    rng = np.random.default_rng(6)
    c1 = torch.from_numpy(random_spd(rng, 40))
    c2 = torch.from_numpy(random_spd(rng, 40, n=10))  # rank 9: C1's Cholesky path
    s1 = sqrtm_psd(c1)
    m = s1 @ c2 @ s1
    via_eigh = torch.linalg.eigvalsh(0.5 * (m + m.T)).clamp_min(0).sqrt().sum()
    torch.testing.assert_close(trace_sqrt_product(c1, c2), via_eigh, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(trace_sqrt_product(c2, c1), via_eigh, rtol=1e-9, atol=1e-12)  # C2's factor
    c3 = torch.from_numpy(random_spd(rng, 40, n=8))  # both singular: the eigh path
    s3 = sqrtm_psd(c3)
    m = s3 @ c2 @ s3
    ref = torch.linalg.eigvalsh(0.5 * (m + m.T)).clamp_min(0).sqrt().sum()
    torch.testing.assert_close(trace_sqrt_product(c3, c2), ref, rtol=1e-9, atol=1e-9)
