import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from fastgan.data.folder import ImageFolderDataset, UnreadableImageError, check_member_name, load_packed, prepare
from fastgan.data.stream import BatchStream, in_memory_source, open_source, to_device


def _make_folder(root, n_per=3, size=(40, 30), mode="RGB"):
    for c in ("cats", "dogs"):
        (root / c).mkdir(parents=True)
        for i in range(n_per):
            a = np.full((size[1], size[0], 3), 50 * i, np.uint8)
            a[:, :, 0] = 200 if c == "dogs" else 10
            Image.fromarray(a).convert(mode).save(root / c / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def test_folder_labels_crop_resize(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG garbage")
    ds = ImageFolderDataset(root, 16)
    assert len(ds) == 6 and ds.classes == ["cats", "dogs"] and ds.num_classes == 2 and ds.channels == 3
    assert ds.skipped == ["dogs/broken.png"]
    x, y = ds[5]
    assert x.dtype == torch.uint8 and x.shape == (3, 16, 16) and y == 1
    assert x[0].float().mean() > 150
    with pytest.raises(UnreadableImageError, match="broken.png"):
        ImageFolderDataset(root, 16, strict=True)


def test_zip_and_path_traversal(tmp_path):
    root = _make_folder(tmp_path / "imgs", mode="L")
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in root.rglob("*.*"):
            zf.write(p, p.relative_to(root).as_posix())
    ds = ImageFolderDataset(z, 8)
    assert len(ds) == 6 and ds.channels == 1 and ds[0][0].shape == (1, 8, 8)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../etc/x.png", b"x")
    with pytest.raises(ValueError, match="unsafe path"):
        ImageFolderDataset(evil, 8)
    for bad in ("/abs.png", "a/../../b.png", "C:/x.png", "..\\x.png"):
        with pytest.raises(ValueError):
            check_member_name(bad)
    assert check_member_name("a/b.png") == "a/b.png"


def test_prepare_npy_and_zip_round_trip(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    msg = prepare(root, tmp_path / "packed.npy", 8)
    assert "packed 6 images" in msg
    images, labels, nc = load_packed(tmp_path / "packed.npy")
    assert images.shape == (6, 3, 8, 8) and labels.tolist() == [0, 0, 0, 1, 1, 1] and nc == 2
    src = open_source(str(tmp_path / "packed.npy"))
    assert src.images is None and src.dataset is not None and src.num_classes == 2  # memory-mapped
    torch.testing.assert_close(src.image_tensor(), images, atol=0, rtol=0)
    prepare(root, tmp_path / "packed.zip", 8)
    ds = ImageFolderDataset(tmp_path / "packed.zip", 8)
    assert len(ds) == 6 and ds.classes == ["cats", "dogs"]
    torch.testing.assert_close(ds[0][0], images[0], atol=0, rtol=0)


def test_batch_stream_deterministic_and_resumable(tmp_path):
    imgs = torch.arange(20, dtype=torch.uint8).reshape(20, 1, 1, 1).expand(20, 1, 2, 2).contiguous()
    src = in_memory_source(imgs, torch.arange(20), 20, "test")
    s = BatchStream(src, 4, seed=3)
    it = s.iterate(0)
    first = [next(it)[1].tolist() for _ in range(12)]  # crosses two epoch boundaries
    assert sorted(sum(first[:5], [])) == list(range(20))
    assert first[:5] != first[5:10]
    it7 = s.iterate(7)
    assert [next(it7)[1].tolist() for _ in range(5)] == first[7:12]
    # two ranks see disjoint halves
    r0, r1 = BatchStream(src, 2, 3, 0, 2).iterate(0), BatchStream(src, 2, 3, 1, 2).iterate(0)
    seen = sum([next(r0)[1].tolist() + next(r1)[1].tolist() for _ in range(5)], [])
    assert sorted(seen) == list(range(20))


def test_folder_source_trains_through_loader(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    src = open_source(str(root), resolution=16)
    assert src.dataset is not None and src.channels == 3
    s = BatchStream(src, 3, seed=0, num_workers=1)
    x, y = next(s.iterate(0))
    assert x.shape == (3, 3, 16, 16) and x.dtype == torch.uint8
    xf = to_device(x, torch.device("cpu"), 32)
    assert xf.shape == (3, 3, 32, 32) and xf.min() >= -1.01 and xf.max() <= 1.01
