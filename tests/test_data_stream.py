"""Data at scale: `prepare` streams (flat memory), packed .npy files train memory-mapped,
the resize filter, x-flip augmentation, and the batch order with DataLoader workers."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastgan.data.folder import PackedDataset, load_image, load_packed, prepare
from fastgan.data.stream import BatchStream, in_memory_source, mirror_mask, open_source

REPO = Path(__file__).resolve().parents[1]
N_BIG, RES_BIG = 3000, 128  # packed: 3000 x 3 x 128 x 128 uint8 = 147 MB
ARRAY_MB = N_BIG * 3 * RES_BIG * RES_BIG / 2**20


def _child(code: str) -> dict:
    """Runs ``code`` in a fresh interpreter; it prints one JSON line last."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


_RSS = """
import json, resource, sys
def peak_mb():  # ru_maxrss: KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
import numpy, torch, PIL.Image, fastgan.data.folder, fastgan.data.stream
"""


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory):
    """3000 small random PNGs (64 x 64, every third 80 x 64: cropped) in two classes, and a zip of them."""
    root = tmp_path_factory.mktemp("big") / "imgs"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    for i in range(N_BIG):
        w = 80 if i % 3 == 0 else 64
        a = rng.integers(0, 256, (64, w, 3), dtype=np.uint8)
        Image.fromarray(a).save(root / ("a" if i % 2 else "b") / f"{i:05d}.png", compress_level=0)
    z = root.parent / "imgs.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in sorted(root.rglob("*.png")):
            zf.write(p, p.relative_to(root).as_posix())
    return root, z


def _prepare_in_child(source, dest) -> dict:
    return _child(_RSS + f"""
base = peak_mb()
msg = fastgan.data.folder.prepare({str(source)!r}, {str(dest)!r}, {RES_BIG}, progress=False)
print(json.dumps({{"base": base, "peak": peak_mb(), "msg": msg}}))
""")


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_prepare_streams_with_flat_memory(big_folder, tmp_path, kind):
    root, z = big_folder
    dest = tmp_path / "big.npy"
    r = _prepare_in_child(root if kind == "folder" else z, dest)
    assert f"packed {N_BIG} images (3x{RES_BIG}x{RES_BIG}, 2 classes)" in r["msg"]
    growth = r["peak"] - r["base"]
    # the old memmap writer kept every written page resident: growth ~ ARRAY_MB (147 MB)
    assert growth < ARRAY_MB / 5, f"prepare's peak RSS grew {growth:.0f} MB for a {ARRAY_MB:.0f} MB array"
    arr = np.load(dest, mmap_mode="r")
    assert arr.shape == (N_BIG, 3, RES_BIG, RES_BIG) and arr.dtype == np.uint8
    assert dest.stat().st_size == arr.offset + arr.nbytes and not dest.with_name("big.npy.tmp").exists()
    # spot check against the per-image path
    name = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))[-1]
    np.testing.assert_array_equal(arr[-1], load_image(root / name, "RGB", RES_BIG))
    labels = np.load(tmp_path / "big.labels.npy")
    assert labels.tolist() == [0] * (N_BIG // 2) + [1] * (N_BIG // 2)


def test_packed_training_source_stays_on_disk(big_folder, tmp_path):
    root, _ = big_folder
    dest = tmp_path / "big.npy"
    prepare(root, dest, RES_BIG, progress=False)
    r = _child(_RSS + f"""
base = peak_mb()
src = fastgan.data.stream.open_source({str(dest)!r})
it = fastgan.data.stream.BatchStream(src, 16, seed=1).iterate(0)
firsts = [next(it)[1].tolist() for _ in range(5)]
print(json.dumps({{"base": base, "peak": peak_mb(), "images": src.images is None,
                   "kind": type(src.dataset).__name__}}))
""")
    assert r["images"] and r["kind"] == "PackedDataset"
    growth = r["peak"] - r["base"]
    assert growth < ARRAY_MB / 5, f"opening + 5 batches grew the peak RSS {growth:.0f} MB ({ARRAY_MB:.0f} MB file)"


def _small_packed(tmp_path, n=40, labels=True):
    """n images 1 x 2 x 3 whose pixels encode the row (and the column, to see flips)."""
    a = np.zeros((n, 1, 2, 3), np.uint8)
    a[:, 0, :, :] = (np.arange(n)[:, None, None] * 3 + np.arange(3)[None, None, :]) % 256
    path = tmp_path / "small.npy"
    np.save(path, a)
    if labels:
        np.save(tmp_path / "small.labels.npy", np.arange(n) % 4)
    return path, a


def _take(it, k):
    return [next(it) for _ in range(k)]


def _same(b1, b2):
    assert len(b1) == len(b2)
    for (x1, y1), (x2, y2) in zip(b1, b2):
        assert torch.equal(x1, x2) and ((y1 is None and y2 is None) or torch.equal(y1, y2))


@pytest.mark.parametrize("mirror", [False, True])
def test_packed_batches_equal_in_memory_batches(tmp_path, mirror):
    path, a = _small_packed(tmp_path)
    src = open_source(str(path))
    assert isinstance(src.dataset, PackedDataset) and src.images is None and src.num_classes == 4
    mem = in_memory_source(torch.from_numpy(a.copy()), torch.arange(40) % 4, 4, "mem")
    _same(_take(BatchStream(src, 8, seed=5, mirror=mirror).iterate(0), 12),  # crosses two epochs
          _take(BatchStream(mem, 8, seed=5, mirror=mirror).iterate(0), 12))


def test_packed_without_labels_and_bad_files(tmp_path):
    path, a = _small_packed(tmp_path, labels=False)
    src = open_source(str(path))
    assert src.labels is None and src.num_classes == 0
    x, y = next(BatchStream(src, 4, seed=0).iterate(0))
    assert y is None and x.shape == (4, 1, 2, 3)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="bad.npy: expected uint8 \\(N, C, H, W\\)"):
        open_source(str(bad))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="junk.npy: not a readable .npy"):
        open_source(str(tmp_path / "junk.npy"))


def test_packed_fingerprint_and_legacy_fingerprint(tmp_path):
    from fastgan.data.stream import _fingerprint_tensor

    path, a = _small_packed(tmp_path)
    src = open_source(str(path))
    labels = torch.from_numpy((np.arange(40) % 4).astype(np.int64))
    old = _fingerprint_tensor(torch.from_numpy(a), labels)  # what the in-memory loader computed
    assert src.fingerprint != old and src.matches(src.fingerprint) and src.matches(old)
    assert not src.matches("0123456789abcdef") and not src.matches(None)
    a2 = a.copy()
    a2[-1, 0, 0, 0] ^= 1  # the last row is always sampled
    np.save(path, a2)
    assert open_source(str(path)).fingerprint != src.fingerprint


def test_packed_dataset_rows_and_truncation(tmp_path):
    path, a = _small_packed(tmp_path)
    ds = PackedDataset(path)
    x, y = ds[5]
    assert torch.equal(x, torch.from_numpy(a[5])) and y == 1
    xb, yb = ds.get_batch([39, 0, 7])
    assert torch.equal(xb, torch.from_numpy(a[[39, 0, 7]])) and yb.tolist() == [3, 0, 3]
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="small.npy: not a readable .npy array"):
        PackedDataset(path)


def test_stream_leaves_the_global_rng_alone(tmp_path):
    path, _ = _small_packed(tmp_path)
    state = torch.get_rng_state()
    for w in (0, 2):
        _take(BatchStream(open_source(str(path)), 8, seed=0, num_workers=w, mirror=True).iterate(3), 6)
    assert torch.equal(torch.get_rng_state(), state)


def test_load_packed_is_a_copy_on_write_view(tmp_path):
    path, a = _small_packed(tmp_path)
    images, labels, nc = load_packed(path)
    assert torch.equal(images, torch.from_numpy(a)) and nc == 4
    images[0].fill_(255)  # private: the file is unchanged
    np.testing.assert_array_equal(np.load(path), a)


def test_resize_is_center_crop_then_lanczos_down_bicubic_up(tmp_path):
    rng = np.random.default_rng(1)
    for (w, h), res, filt in (((100, 61), 32, Image.LANCZOS), ((61, 100), 32, Image.LANCZOS),
                              ((30, 21), 48, Image.BICUBIC), ((40, 32), 32, None)):
        p = tmp_path / f"{w}x{h}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        with Image.open(p) as im:
            ref = im.convert("RGB").crop((left, top, left + s, top + s))
            if filt is not None:
                ref = ref.resize((res, res), filt)
        np.testing.assert_array_equal(load_image(p, "RGB", res), np.asarray(ref).transpose(2, 0, 1))


def _flipped(x, base):
    """Per image: True if x is base's x-flip (and not base)."""
    return [bool(torch.equal(xi, bi.flip(-1)) and not torch.equal(xi, bi)) for xi, bi in zip(x, base)]


def test_mirror_flips_half_deterministically_and_resumes(tmp_path):
    path, a = _small_packed(tmp_path, n=64)
    mem = in_memory_source(torch.from_numpy(a.copy()), None, 0, "mem")
    plain = _take(BatchStream(mem, 16, seed=2).iterate(0), 40)
    flipped = _take(BatchStream(mem, 16, seed=2, mirror=True).iterate(0), 40)
    marks = [f for (x, _), (base, _) in zip(flipped, plain) for f in _flipped(x, base)]
    for (x, _), (base, _) in zip(flipped, plain):  # every image is either itself or its flip
        assert all(torch.equal(xi, bi) or torch.equal(xi, bi.flip(-1)) for xi, bi in zip(x, base))
    assert 0.4 < sum(marks) / len(marks) < 0.6  # 640 coin flips
    _same(flipped, _take(BatchStream(mem, 16, seed=2, mirror=True).iterate(0), 40))  # deterministic
    _same(flipped[23:], _take(BatchStream(mem, 16, seed=2, mirror=True).iterate(23), 17))  # resume
    # other seeds and other ranks get their own coins
    assert not all(torch.equal(mirror_mask(2, b, 0, 1, 16), mirror_mask(3, b, 0, 1, 16)) for b in range(4))
    assert not all(torch.equal(mirror_mask(2, b, 0, 2, 16), mirror_mask(2, b, 1, 2, 16)) for b in range(4))


@pytest.mark.parametrize("mirror", [False, True])
def test_workers_keep_the_batch_order_and_resume(tmp_path, mirror):
    path, _ = _small_packed(tmp_path)
    src = open_source(str(path))
    ref = _take(BatchStream(src, 8, seed=4, mirror=mirror).iterate(0), 12)
    w2 = BatchStream(src, 8, seed=4, num_workers=2, mirror=mirror)
    _same(_take(w2.iterate(0), 12), ref)
    _same(_take(w2.iterate(7), 5), ref[7:12])


def test_folder_source_mirror_and_workers(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(3)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / f"{i:02d}.png")
    src = open_source(str(root), resolution=8)
    ref = _take(BatchStream(src, 4, seed=0, mirror=True).iterate(0), 6)
    _same(_take(BatchStream(src, 4, seed=0, mirror=True, num_workers=2).iterate(3), 3), ref[3:])
    plain = _take(BatchStream(src, 4, seed=0).iterate(0), 6)
    assert any(any(_flipped(x, b)) for (x, _), (b, _) in zip(ref, plain))


def test_mirror_config_flag_and_resume_rules(tmp_path):
    from fastgan.train.checkpoint import config_mismatch
    from fastgan.train.config import RESUME_FREE_KEYS, TrainConfig, make_config

    assert TrainConfig().mirror is False and "mirror" not in RESUME_FREE_KEYS
    assert make_config(overrides={"mirror": True}).mirror is True
    with pytest.raises(ValueError, match="mirror: expected true/false"):
        make_config(overrides={"mirror": "sometimes"})
    cur = TrainConfig().to_dict()
    old = {k: v for k, v in cur.items() if k != "mirror"}  # a checkpoint from before the option
    assert config_mismatch(old, cur, RESUME_FREE_KEYS, defaults=TrainConfig().to_dict()) == []
    assert config_mismatch(old, dict(cur, mirror=True), RESUME_FREE_KEYS, defaults=TrainConfig().to_dict())


def test_cli_mirror_and_prepare_progress(tmp_path, capsys):
    from fastgan.cli import main

    assert main(["train", "--mirror", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["mirror"] is True
    assert main(["train", "--mirror", "false", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["mirror"] is False
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(3):
        Image.fromarray(np.full((6, 6), 40 * i, np.uint8)).save(root / f"{i}.png")
    assert main(["prepare", str(root), str(tmp_path / "p.npy"), "--resolution", "4", "--progress"]) == 0
    cap = capsys.readouterr()
    assert "packed 3 images" in cap.out and "packing" in cap.err  # the tqdm bar
    assert main(["prepare", str(root), str(tmp_path / "q.npy"), "--resolution", "4", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
