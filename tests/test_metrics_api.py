"""compute_metrics, sources, caching, provenance, the `fastgan eval` command, DDP gather."""

import json
import os

import pytest
import torch

from fastgan.data import load_idx_dataset
from fastgan.metrics import GeneratorSource, TensorSource, compute_metrics, register_checkpoint_loader
from fastgan.metrics import cli
from fastgan.metrics.classifier import ARCH, SmallCNN, classifier_cache_path, dataset_fingerprint
from fastgan.metrics.features import Backbone, extract
from fastgan.metrics.sources import CheckpointLoaderUnavailable, generator_from_checkpoint
from tests.gan_fixtures import fashion_mnist_installed

needs_data = pytest.mark.skipif(not fashion_mnist_installed(),
                                reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def fmnist_test():
    return load_idx_dataset(split="test")


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FASTGAN_INCEPTION_WEIGHTS", raising=False)
    yield
    register_checkpoint_loader(None)


def random_classifier(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(10).eval(), {"test_accuracy": None, "sha256": "0" * 64, "train_fingerprint": "test"}


class TinyGenerator(torch.nn.Module):
    """A small conditional generator: latent + class embedding -> 28x28 tanh image."""

    def __init__(self, latent=16, classes=10):
        super().__init__()
        self.emb = torch.nn.Embedding(classes, latent)
        self.fc = torch.nn.Linear(latent, 32 * 7 * 7)
        self.up = torch.nn.Sequential(torch.nn.ConvTranspose2d(32, 16, 4, 2, 1), torch.nn.ReLU(),
                                      torch.nn.ConvTranspose2d(16, 1, 4, 2, 1), torch.nn.Tanh())

    def forward(self, z, labels=None):
        if labels is not None:
            z = z + self.emb(labels)
        return self.up(self.fc(z).view(-1, 32, 7, 7))


@needs_data
def test_identical_zero_and_monotone_in_noise(fmnist_test):
    real = TensorSource(fmnist_test.images[:800], fmnist_test.labels[:800], name="fm-test-800")
    clf = random_classifier()
    base = fmnist_test.images[:800].float() / 127.5 - 1
    noise = torch.randn(base.shape, generator=torch.Generator().manual_seed(1))
    fids, precs = [], []
    for sigma in (0.0, 0.1, 0.3, 0.6):
        gen = TensorSource(base + sigma * noise, name=f"noise{sigma}")
        r = compute_metrics(["fid_classifier", "precision_classifier"], gen, real, num_gen=800, classifier=clf)
        fids.append(r["fid_classifier"]["value"])
        precs.append(r["precision_classifier"]["value"])
    assert fids[0] == pytest.approx(0.0, abs=1e-9) and precs[0] == 1.0
    assert all(a < b for a, b in zip(fids, fids[1:])), fids
    assert all(a >= b for a, b in zip(precs, precs[1:])) and precs[-1] < precs[0], precs


@needs_data
def test_generator_metrics_provenance_and_reference_cache(fmnist_test):
    torch.manual_seed(0)
    g = TinyGenerator().eval()
    src = GeneratorSource(g, latent_dim=16, num_classes=10, seed=3, name="tiny")
    real = TensorSource(fmnist_test.images[:600], fmnist_test.labels[:600], name="fm-test-600")
    clf = random_classifier()
    names = ["fid_classifier", "kid_classifier", "recall_classifier", "classifier_accuracy"]
    r1 = compute_metrics(names, src, real, num_gen=300, batch_size=64, classifier=clf, kid_subsets=5, kid_subset_size=100)
    assert list(r1) == names
    pv = r1["fid_classifier"]["provenance"]
    assert pv["n_generated"] == 300 and pv["n_real"] == 600
    assert pv["reference"]["fingerprint"] == dataset_fingerprint(fmnist_test.images[:600], fmnist_test.labels[:600])
    assert pv["backbone"].startswith(ARCH) and pv["weights_sha256"] == "0" * 64
    assert pv["resize"] and pv["fastgan_version"] and pv["reference_stats_cached"] is False
    assert r1["fid_classifier"]["value"] > 0 and "std" in r1["kid_classifier"]
    assert 0.0 <= r1["classifier_accuracy"]["value"] <= 1.0
    json.dumps(r1)  # serializable as written by `fastgan eval --json`
    # Second call: reference side from the cache, same numbers (deterministic latents).
    r2 = compute_metrics(names, src, real, num_gen=300, batch_size=64, classifier=clf, kid_subsets=5, kid_subset_size=100)
    assert r2["fid_classifier"]["provenance"]["reference_stats_cached"] is True
    for k in names:
        assert r2[k]["value"] == pytest.approx(r1[k]["value"], rel=1e-9, abs=1e-12)
    # classifier_accuracy on an unconditional generator is refused clearly.
    with pytest.raises(ValueError, match="conditional"):
        compute_metrics(["classifier_accuracy"], GeneratorSource(g, latent_dim=16), real, num_gen=10, classifier=clf)
    with pytest.raises(ValueError, match="unknown"):
        compute_metrics(["fidd"], src, real, classifier=clf)


def test_damaged_reference_cache_is_recomputed(tmp_path):
    g = torch.Generator().manual_seed(0)
    real = TensorSource(torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=g), name="rand-64")
    fake = TensorSource(torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8, generator=g), name="rand-32")
    clf = random_classifier()
    r1 = compute_metrics(["fid_classifier"], fake, real, num_gen=32, classifier=clf)
    (cached,) = (tmp_path / "cache" / "fastgan" / "refstats").glob("*.pt")
    cached.write_bytes(cached.read_bytes()[:100])
    logged = []
    r2 = compute_metrics(["fid_classifier"], fake, real, num_gen=32, classifier=clf, log=logged.append)
    assert r2["fid_classifier"]["provenance"]["reference_stats_cached"] is False
    assert r2["fid_classifier"]["value"] == pytest.approx(r1["fid_classifier"]["value"], rel=1e-9)
    assert any("corrupt reference statistics cache" in m and "recomputing" in m for m in logged), logged
    r3 = compute_metrics(["fid_classifier"], fake, real, num_gen=32, classifier=clf)  # rewritten
    assert r3["fid_classifier"]["provenance"]["reference_stats_cached"] is True


def test_inception_metric_without_weights_stops_with_instructions():
    src = GeneratorSource(lambda z: torch.tanh(z.view(-1, 1, 4, 4)), latent_dim=16)
    real = TensorSource(torch.zeros(4, 1, 4, 4, dtype=torch.uint8))
    from fastgan.metrics.inception import INCEPTION_WEIGHTS_URL, InceptionWeightsError

    with pytest.raises(InceptionWeightsError, match="pt_inception-2015-12-05"):
        compute_metrics("fid", src, real, num_gen=4)
    register_checkpoint_loader(lambda path, device: {"generator": lambda z: torch.tanh(z.view(-1, 1, 4, 4)), "latent_dim": 16})


def test_generator_source_deterministic_and_validated():
    g = lambda z: torch.tanh(z.view(-1, 1, 4, 4))  # noqa: E731
    src = GeneratorSource(g, latent_dim=16, seed=5)
    a = torch.cat([x for _, x, _ in src.batches(10, 4)])
    b = torch.cat([x for _, x, _ in src.batches(10, 4)])
    torch.testing.assert_close(a, b)
    # Rank split: the union of both ranks' batches is the single-process set.
    r0 = {s: x for s, x, _ in src.batches(10, 4, rank=0, world=2)}
    r1 = {s: x for s, x, _ in src.batches(10, 4, rank=1, world=2)}
    assert sorted(r0) == [0, 8] and sorted(r1) == [4]
    torch.testing.assert_close(torch.cat([r0[0], r1[4], r0[8]]), a)
    with pytest.raises(ValueError, match="latent_dim"):
        GeneratorSource(g)
    with pytest.raises(ValueError, match="generator"):
        list(GeneratorSource(lambda z: z, latent_dim=3).batches(2, 2))


def test_checkpoint_hook(tmp_path):
    ckpt = tmp_path / "run"
    ckpt.mkdir()
    with pytest.raises(FileNotFoundError):
        generator_from_checkpoint(tmp_path / "missing.pt")
    seen = {}

    def loader(path, device):
        seen["path"] = path
        return {"generator": lambda z, y: torch.tanh(z.view(-1, 1, 4, 4)), "latent_dim": 16, "num_classes": 3,
                "dataset": "/some/root"}

    register_checkpoint_loader(loader)
    src, info = generator_from_checkpoint(ckpt)
    assert seen["path"] == ckpt and src.conditional and info["dataset"] == "/some/root"
    # a registered loader wins over the one passed in
    src, _ = generator_from_checkpoint(ckpt, loader=lambda p, d: pytest.fail("the registered loader must win"))
    assert src.conditional
    register_checkpoint_loader(None)
    # metrics reads no checkpoints itself (it never imports fastgan.train): a loader must be given
    with pytest.raises(CheckpointLoaderUnavailable, match="load_generator_for_eval"):
        generator_from_checkpoint(ckpt)
    seen.clear()
    src, info = generator_from_checkpoint(ckpt, "cpu", loader=loader)
    assert seen["path"] == ckpt and src.num_classes == 3 and info["dataset"] == "/some/root"


def test_cli_uses_the_loader_it_is_given(tmp_path, capsys):
    seen = []

    def loader(path, device):
        seen.append((path, device))
        return {"generator": lambda z: torch.tanh(z.view(-1, 1, 4, 4)), "latent_dim": 16}

    rc = cli.main([str(tmp_path), "--metrics", "fid", "--device", "cpu"], checkpoint_loader=loader)
    assert rc == 2 and "pt_inception-2015-12-05-6726825d.pth" in capsys.readouterr().err  # got past the loading
    assert seen == [(tmp_path, "cpu")]
    assert cli.main([str(tmp_path), "--metrics", "fid", "--device", "cpu"]) == 2  # no loader
    assert "fastgan.metrics reads no checkpoints itself" in capsys.readouterr().err


def test_cli_without_inception_weights(tmp_path, capsys):
    register_checkpoint_loader(lambda path, device: {"generator": lambda z: torch.tanh(z.view(-1, 1, 4, 4)), "latent_dim": 16})
    rc = cli.main([str(tmp_path), "--metrics", "fid,kid", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "pt_inception-2015-12-05-6726825d.pth" in err and "https://github.com/mseitzer/pytorch-fid/releases" in err
    assert cli.main(["--metrics", "fid"]) == 2


@needs_data
def test_cli_eval_with_cached_classifier(tmp_path, capsys):
    # A (random-weight) classifier planted in the cache under the training split's key,
    # as `fastgan eval --train-classifier` would leave it.
    train = load_idx_dataset(split="train")
    fp = dataset_fingerprint(train.images, train.labels)
    model, _ = random_classifier()
    path = classifier_cache_path(fp)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": model.state_dict(), "meta": {"arch": ARCH, "num_classes": 10, "train_fingerprint": fp,
                                                            "test_accuracy": 0.1}}, path)
    torch.manual_seed(0)
    g = TinyGenerator().eval()
    register_checkpoint_loader(lambda p, device: {"generator": g, "latent_dim": 16, "num_classes": 10})
    out = tmp_path / "scores.json"
    rc = cli.main([str(tmp_path), "--metrics", "fid_classifier,classifier_accuracy", "--num-gen", "200",
                   "--num-real", "500", "--device", "cpu", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "fid_classifier" in text and "classifier_accuracy" in text
    res = json.loads(out.read_text())
    assert res["fid_classifier"]["provenance"]["classifier_test_accuracy"] == 0.1
    assert res["fid_classifier"]["provenance"]["reference"]["split"] == "train"
    assert res["fid_classifier"]["provenance"]["n_real"] == 500


def _ddp_worker(rank, world, port, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        lin = torch.nn.Linear(16, 8)
        bb = Backbone("lin", lambda x: (lin(x.flatten(1)), None), 8, None, "none")
        src = GeneratorSource(lambda z: z.view(-1, 1, 4, 4), latent_dim=16, seed=1)
        with torch.no_grad():
            res = extract(bb, src, 37, 5, keep_features=True)
        mu, cov = res.stats.mean_cov()
        torch.save({"mu": mu, "cov": cov, "feats": res.features, "n": res.stats.n}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_extract_two_gloo_ranks(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8)
    bb = Backbone("lin", lambda x: (lin(x.flatten(1)), None), 8, None, "none")
    src = GeneratorSource(lambda z: z.view(-1, 1, 4, 4), latent_dim=16, seed=1)
    with torch.no_grad():
        ref = extract(bb, src, 37, 5, keep_features=True)
    mu, cov = ref.stats.mean_cov()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["n"] == 37
        torch.testing.assert_close(got["feats"], ref.features)  # gathered in global order
        torch.testing.assert_close(got["mu"], mu)
        torch.testing.assert_close(got["cov"], cov)


def test_npy_and_folder_sources(tmp_path):
    import numpy as np

    from fastgan.metrics import image_folder_source

    arr = np.random.default_rng(0).integers(0, 256, (5, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "imgs.npy", arr)
    src = image_folder_source(tmp_path / "imgs.npy")
    assert src.images.shape == (5, 1, 8, 8) and not src.conditional
    got = torch.cat([x for _, x, _ in src.batches(None, 2)])
    assert torch.equal(got, torch.from_numpy(arr).unsqueeze(1))
    np.save(tmp_path / "f.npy", arr.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        image_folder_source(tmp_path / "f.npy")
    with pytest.raises(ValueError, match="no .png"):
        image_folder_source(tmp_path)
    with pytest.raises(ValueError, match="asked for"):
        list(src.batches(6, 2))


def test_generator_source_max_batch_keeps_the_samples():
    """max_batch bounds the images per generator call; the samples (latents, labels, order)
    are those of the unchunked batches."""
    from fastgan.metrics.sources import GeneratorSource

    calls = []

    def gen(z, labels):
        calls.append(z.shape[0])
        return torch.tanh(z[:, :12].reshape(-1, 3, 2, 2) + labels[:, None, None, None].float())

    def collect(src):
        return [(s, x.clone(), y.clone()) for s, x, y in src.batches(23, 10)]

    whole = collect(GeneratorSource(gen, latent_dim=12, num_classes=3, seed=4))
    assert calls == [10, 10, 3]
    calls.clear()
    chunked = collect(GeneratorSource(gen, latent_dim=12, num_classes=3, seed=4, max_batch=4))
    assert calls == [4, 4, 2, 4, 4, 2, 3]
    assert [s for s, _, _ in chunked] == [0, 4, 8, 10, 14, 18, 20]
    torch.testing.assert_close(torch.cat([x for _, x, _ in chunked]), torch.cat([x for _, x, _ in whole]))
    assert torch.equal(torch.cat([y for _, _, y in chunked]), torch.cat([y for _, _, y in whole]))
    with pytest.raises(ValueError, match="max_batch"):
        GeneratorSource(gen, latent_dim=12, max_batch=0)


def test_generation_batch_shrinks_with_resolution():
    from fastgan.train.images import generation_batch

    assert [generation_batch(r) for r in (28, 64, 128, 256, 512, 1024)] == [64, 64, 64, 16, 4, 1]
