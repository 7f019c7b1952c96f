"""The FID Inception module against the published pt_inception-2015-12-05 layout."""

import pytest
import torch

from fastgan.metrics.inception import (
    INCEPTION_WEIGHTS_FILE,
    INCEPTION_WEIGHTS_URL,
    FIDInceptionV3,
    InceptionWeightsError,
    load_fid_inception,
    preprocess_images,
    resolve_inception_weights,
    sha256_file,
)

# Every convolution of pt_inception-2015-12-05-6726825d.pth: (name, in, out, kh, kw).
# Each has <name>.conv.weight (out, in, kh, kw) and <name>.bn.{weight,bias,running_mean,running_var} (out,).
CONVS = [
    ("Conv2d_1a_3x3", 3, 32, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3), ("Conv2d_2b_3x3", 32, 64, 3, 3),
    ("Conv2d_3b_1x1", 64, 80, 1, 1), ("Conv2d_4a_3x3", 80, 192, 3, 3),
]
for blk, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
    CONVS += [
        (f"{blk}.branch1x1", cin, 64, 1, 1), (f"{blk}.branch5x5_1", cin, 48, 1, 1), (f"{blk}.branch5x5_2", 48, 64, 5, 5),
        (f"{blk}.branch3x3dbl_1", cin, 64, 1, 1), (f"{blk}.branch3x3dbl_2", 64, 96, 3, 3),
        (f"{blk}.branch3x3dbl_3", 96, 96, 3, 3), (f"{blk}.branch_pool", cin, pool, 1, 1),
    ]
CONVS += [
    ("Mixed_6a.branch3x3", 288, 384, 3, 3), ("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1),
    ("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3), ("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3),
]
for blk, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
    CONVS += [
        (f"{blk}.branch1x1", 768, 192, 1, 1),
        (f"{blk}.branch7x7_1", 768, c7, 1, 1), (f"{blk}.branch7x7_2", c7, c7, 1, 7), (f"{blk}.branch7x7_3", c7, 192, 7, 1),
        (f"{blk}.branch7x7dbl_1", 768, c7, 1, 1), (f"{blk}.branch7x7dbl_2", c7, c7, 7, 1),
        (f"{blk}.branch7x7dbl_3", c7, c7, 1, 7), (f"{blk}.branch7x7dbl_4", c7, c7, 7, 1),
        (f"{blk}.branch7x7dbl_5", c7, 192, 1, 7), (f"{blk}.branch_pool", 768, 192, 1, 1),
    ]
CONVS += [
    ("Mixed_7a.branch3x3_1", 768, 192, 1, 1), ("Mixed_7a.branch3x3_2", 192, 320, 3, 3),
    ("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1), ("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7),
    ("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1), ("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3),
]
for blk, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
    CONVS += [
        (f"{blk}.branch1x1", cin, 320, 1, 1), (f"{blk}.branch3x3_1", cin, 384, 1, 1),
        (f"{blk}.branch3x3_2a", 384, 384, 1, 3), (f"{blk}.branch3x3_2b", 384, 384, 3, 1),
        (f"{blk}.branch3x3dbl_1", cin, 448, 1, 1), (f"{blk}.branch3x3dbl_2", 448, 384, 3, 3),
        (f"{blk}.branch3x3dbl_3a", 384, 384, 1, 3), (f"{blk}.branch3x3dbl_3b", 384, 384, 3, 1),
        (f"{blk}.branch_pool", cin, 192, 1, 1),
    ]


def published_layout():
    layout = {}
    for name, cin, cout, kh, kw in CONVS:
        layout[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for p in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{name}.bn.{p}"] = (cout,)
    layout["fc.weight"] = (1008, 2048)
    layout["fc.bias"] = (1008,)
    return layout


def test_parameter_names_and_shapes_match_published_layout():
    layout = published_layout()
    assert len(CONVS) == 94 and len(layout) == 94 * 5 + 2
    state = {k: tuple(v.shape) for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")}
    assert state == layout


def random_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in published_layout().items():
        if k.endswith("running_var"):
            state[k] = torch.rand(shape, generator=g) + 0.5
        elif k.endswith("conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            state[k] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif k.endswith("bn.weight"):
            state[k] = torch.ones(shape)
        else:
            state[k] = torch.randn(shape, generator=g) * 0.01
    return state


def test_forward_random_weights_gives_pool_features(tmp_path):
    path = tmp_path / "inception.pth"
    torch.save(random_state(), path)
    model, digest = load_fid_inception(path)
    assert digest == sha256_file(path) and len(digest) == 64
    # One grayscale uint8 image and one RGB float image of another size, in one forward
    # (resized to 299 each, then stacked): keeps the test to a single 2-image pass.
    g = torch.randint(0, 256, (1, 1, 28, 28), dtype=torch.uint8)
    x = torch.cat([preprocess_images(g), preprocess_images(torch.rand(1, 3, 64, 48) * 2 - 1)])
    feats, logits = model(x, return_logits=True)
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # ReLU outputs, averaged
    assert not torch.allclose(feats[0], feats[1])
    # uint8 grayscale input == the same image as float [-1, 1] tiled to three channels.
    torch.testing.assert_close(preprocess_images(g), preprocess_images((g.float() / 127.5 - 1).repeat(1, 3, 1, 1)))
    # Loaded values really are the file's (strictly: a key of each kind).
    sd = model.state_dict()
    ref = torch.load(path, weights_only=True)
    for k in ("Mixed_7c.branch_pool.conv.weight", "Conv2d_1a_3x3.bn.running_var", "fc.bias"):
        torch.testing.assert_close(sd[k], ref[k])


def test_preprocess_resize_bilinear():
    x = torch.rand(1, 1, 28, 28) * 2 - 1
    y = preprocess_images(x)
    assert y.shape == (1, 3, 299, 299)
    ref = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    torch.testing.assert_close(y[:, 1:2], ref)
    with pytest.raises(ValueError, match="images"):
        preprocess_images(torch.zeros(1, 2, 8, 8))
    with pytest.raises(TypeError, match="images"):
        preprocess_images(torch.zeros(1, 3, 8, 8, dtype=torch.int32))


def test_missing_weights_says_what_and_where(monkeypatch):
    monkeypatch.delenv("FASTGAN_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(InceptionWeightsError) as e:
        resolve_inception_weights(None)
    assert INCEPTION_WEIGHTS_FILE in str(e.value) and INCEPTION_WEIGHTS_URL in str(e.value)
    with pytest.raises(InceptionWeightsError, match="no such"):
        resolve_inception_weights("/nonexistent/x.pth")


def test_env_variable(monkeypatch, tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"x")
    monkeypatch.setenv("FASTGAN_INCEPTION_WEIGHTS", str(path))
    assert resolve_inception_weights(None) == path


def test_wrong_file_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    state = random_state()
    state["fc.weight"] = torch.zeros(1000, 2048)  # torchvision's 1000-class head
    del state["Mixed_7c.branch_pool.conv.weight"]
    state["AuxLogits.fc.weight"] = torch.zeros(3)
    torch.save(state, bad)
    with pytest.raises(InceptionWeightsError) as e:
        load_fid_inception(bad)
    msg = str(e.value)
    assert "missing: Mixed_7c.branch_pool.conv.weight" in msg
    assert "unexpected: AuxLogits.fc.weight" in msg
    assert "fc.weight: file (1000, 2048), expected (1008, 2048)" in msg
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InceptionWeightsError, match="not a PyTorch weights file"):
        load_fid_inception(junk)
    # A pickle with arbitrary objects is refused (weights_only), without torch's advice to
    # retry with weights_only=False.
    evil = tmp_path / "evil.pth"
    torch.save({"x": object()}, evil)
    with pytest.raises(InceptionWeightsError, match="not a PyTorch weights file") as e:
        load_fid_inception(evil)
    assert "weights_only" not in str(e.value)
