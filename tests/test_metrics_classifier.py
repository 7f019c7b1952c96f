"""The offline Fashion-MNIST classifier: accuracy, caching, CAS and classifier accuracy."""

import pytest
import torch

from fastgan.metrics import GeneratorSource, compute_metrics
from fastgan.metrics.classifier import (
    ClassifierNotTrainedError,
    SmallCNN,
    cache_dir,
    classifier_cache_path,
    dataset_fingerprint,
    load_cached_classifier,
    load_or_train_classifier,
    to_unit_range,
)
from tests.gan_fixtures import fashion_mnist_installed


def _data():
    from fastgan.data import load_idx_dataset

    return load_idx_dataset(split="train"), load_idx_dataset(split="test")


needs_data = pytest.mark.skipif(not fashion_mnist_installed(),
                                reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


def test_cache_dir_and_missing_classifier(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "fastgan"
    with pytest.raises(ClassifierNotTrainedError, match="--train-classifier"):
        load_cached_classifier("ab" * 32)
    # a damaged or foreign cache file: retrain (load_or_train_classifier(train_if_missing=True) does)
    path = classifier_cache_path("ab" * 32)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ClassifierNotTrainedError, match="corrupt cached classifier .*retrain with --train-classifier"):
        load_cached_classifier("ab" * 32)
    torch.save({"meta": object()}, path)
    with pytest.raises(ClassifierNotTrainedError, match="not a cached classifier") as e:
        load_cached_classifier("ab" * 32)
    assert "weights_only" not in str(e.value)


def test_small_cnn_shapes_and_inputs():
    m = SmallCNN(10).eval()
    u8 = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    f, logits = m(u8, return_features=True)
    assert f.shape == (3, 128) and logits.shape == (3, 10)
    torch.testing.assert_close(m(u8), m(u8.float() / 127.5 - 1))
    assert to_unit_range(torch.zeros(2, 3, 32, 32)).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="images"):
        m(torch.zeros(2, 28, 28))


def real_image_generator(images, labels):
    """A 'generator' that returns real images of the requested class, picked by the latent."""
    by_class = [torch.nonzero(labels == c).flatten() for c in range(10)]
    x = images.float() / 127.5 - 1

    def gen(z, y):
        pick = (z[:, 0].abs() * 1e6).long()
        idx = torch.stack([by_class[c][p % len(by_class[c])] for c, p in zip(y.tolist(), pick)])
        return x[idx]

    return gen


@needs_data
@pytest.mark.slow
def test_classifier_reaches_90_percent_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    train, test = _data()
    model, meta = load_or_train_classifier(train, test, train_if_missing=True, epochs=3)
    print(f"classifier test accuracy {meta['test_accuracy']:.4f} in {meta['train_seconds']} s")
    assert meta["test_accuracy"] >= 0.90
    path = classifier_cache_path(dataset_fingerprint(train.images, train.labels))
    assert path.is_file() and meta["path"] == str(path) and len(meta["sha256"]) == 64
    # Second call: loaded from the cache, not retrained.
    model2, meta2 = load_or_train_classifier(train, test)
    assert meta2["test_accuracy"] == meta["test_accuracy"] and "train_seconds" in meta2
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        torch.testing.assert_close(a, b)

    # Conditional "generator" returning real training images of the asked class: the
    # pretrained classifier's accuracy on its samples is about its accuracy on real data,
    # and CAS (trained on 3000 of those samples, tested on the real test split) is high;
    # with labels shuffled, CAS collapses to chance.
    gen = real_image_generator(train.images, train.labels)
    src = GeneratorSource(gen, latent_dim=4, num_classes=10)
    res = compute_metrics(["classifier_accuracy", "fid_classifier", "cas"], src, num_gen=3000, num_real=5000,
                          classifier=(model, meta), cas_epochs=1)
    assert res["classifier_accuracy"]["value"] > 0.9
    assert res["cas"]["value"] > 0.75
    assert res["cas"]["provenance"]["cas_train_samples"] == 3000
    noisy = GeneratorSource(lambda z, y: (gen(z, y) + 0.5 * torch.randn(z.shape[0], 1, 28, 28)).clamp(-1, 1),
                            latent_dim=4, num_classes=10)
    fid_noisy = compute_metrics(["fid_classifier"], noisy, num_gen=3000, num_real=5000,
                                classifier=(model, meta))["fid_classifier"]["value"]
    assert res["fid_classifier"]["value"] < 0.1 * fid_noisy  # real vs real images: near 0
    wrong = GeneratorSource(lambda z, y: gen(z, (y + 1) % 10), latent_dim=4, num_classes=10)
    res2 = compute_metrics(["classifier_accuracy", "cas"], wrong, num_gen=3000, classifier=(model, meta), cas_epochs=1)
    assert res2["classifier_accuracy"]["value"] < 0.1 and res2["cas"]["value"] < 0.1
