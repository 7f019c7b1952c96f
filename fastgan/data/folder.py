"""Image folders and zip archives of images (PNG/JPEG/... via Pillow), and packing them.

Labels come from the first-level sub-folders (sorted names = class 0, 1, ...); images at
the top level get class 0 and make the dataset unconditional when there are no
sub-folders. Every image is converted to the dataset's mode (L when the first image is
grayscale, else RGB), center-cropped to a square and resized to the target resolution.
An unreadable image is skipped and counted (``strict=True``: an error naming the file).
Zip member names are checked: absolute paths and ``..`` components are refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path, PurePosixPath
from typing import Optional, Union

import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class UnreadableImageError(ValueError):
    pass


def check_member_name(name: str) -> str:
    """Refuses zip member names that would escape a destination folder."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or ".." in p.parts or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"zip member {name!r}: unsafe path (absolute or '..'); refusing the archive")
    return str(p)


def load_image(data: Union[bytes, Path], mode: str, resolution: int) -> np.ndarray:
    """Decodes, converts to ``mode``, center-crops and resizes: uint8 (C, R, R)."""
    from PIL import Image

    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with Image.open(src) as im:
        im.load()
        im = im.convert(mode)
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s))
    if s != resolution:
        im = im.resize((resolution, resolution), Image.BICUBIC if s < resolution else Image.LANCZOS)
    a = np.array(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy()


class ImageFolderDataset(Dataset):
    def __init__(self, root: Union[str, os.PathLike], resolution: int, strict: bool = False) -> None:
        from PIL import Image

        self.root, self.resolution, self.strict = Path(root), int(resolution), strict
        if resolution < 1:
            raise ValueError(f"resolution: must be >= 1, got {resolution}")
        if not self.root.exists():
            raise ValueError(f"{self.root}: no such image folder or zip archive")
        self.is_zip = self.root.is_file() and zipfile.is_zipfile(self.root)
        if not self.is_zip and not self.root.is_dir():
            raise ValueError(f"{self.root}: neither an image folder nor a zip archive")
        self._zip: Optional[zipfile.ZipFile] = None
        self._zip_pid = None
        if self.is_zip:
            with zipfile.ZipFile(self.root) as zf:
                infos = [i for i in zf.infolist() if not i.is_dir()]
                for i in infos:
                    check_member_name(i.filename)
                names = sorted((i.filename, i.file_size) for i in infos if i.filename.lower().endswith(IMAGE_EXTS))
        else:
            names = sorted((str(p.relative_to(self.root).as_posix()), p.stat().st_size)
                           for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        if not names:
            raise ValueError(f"{self.root}: no images ({', '.join(IMAGE_EXTS)})")
        classes = sorted({n.split("/")[0] for n, _ in names if "/" in n})
        self.classes = classes
        index = {c: i for i, c in enumerate(classes)}
        # header check (cheap: Pillow reads the header only); unreadable files are skipped
        self.files, labels, self.skipped, self.mode = [], [], [], None
        for name, _size in names:
            try:
                with Image.open(io.BytesIO(self._read(name)) if self.is_zip else self.root / name) as im:
                    mode = im.mode
            except Exception as e:  # noqa: BLE001 - any decoder error means unreadable
                if strict:
                    raise UnreadableImageError(f"{self.root}/{name}: unreadable image ({e})") from e
                self.skipped.append(name)
                continue
            if self.mode is None:
                self.mode = "L" if mode in ("L", "1", "I;16", "I") else "RGB"
            self.files.append(name)
            labels.append(index[name.split("/")[0]] if "/" in name else 0)
        if not self.files:
            raise ValueError(f"{self.root}: none of the {len(names)} images could be read")
        self.labels = labels
        self.num_classes = len(classes) if classes else 0
        self.channels = 1 if self.mode == "L" else 3
        self._hash = hashlib.sha1(json.dumps([names, resolution]).encode()).hexdigest()[:16]
        self.decode_failures = 0
        self._close()

    def _read(self, name: str) -> bytes:
        if self._zip is None or self._zip_pid != os.getpid():  # one handle per worker process
            self._zip = zipfile.ZipFile(self.root)
            self._zip_pid = os.getpid()
        return self._zip.read(name)

    def _close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        self._zip, self._zip_pid = None, None

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_zip"], d["_zip_pid"] = None, None
        return d

    def __len__(self) -> int:
        return len(self.files)

    def labels_tensor(self) -> torch.Tensor:
        return torch.tensor(self.labels, dtype=torch.int64)

    def fingerprint(self) -> str:
        return self._hash

    def load(self, i: int) -> np.ndarray:
        name = self.files[i]
        data = self._read(name) if self.is_zip else self.root / name
        try:
            return load_image(data, self.mode, self.resolution)
        except Exception as e:  # noqa: BLE001
            raise UnreadableImageError(f"{self.root}/{name}: unreadable image ({e})") from e

    def __getitem__(self, i: int):
        try:
            return torch.from_numpy(self.load(i)), self.labels[i]
        except UnreadableImageError:
            if self.strict:
                raise
            self.decode_failures += 1
            # a file whose header parsed but whose data does not: use the next one instead
            for k in range(1, len(self.files)):
                j = (i + k) % len(self.files)
                try:
                    return torch.from_numpy(self.load(j)), self.labels[j]
                except UnreadableImageError:
                    continue
            raise


def prepare(source, dest, resolution: int, strict: bool = False) -> str:
    """Packs ``source`` (folder or zip) at ``resolution`` into ``dest``: a .npy of uint8
    (N, C, R, R) plus ``<dest>.labels.npy`` and ``<dest>.json`` (classes), or a .zip of PNGs."""
    from PIL import Image

    ds = ImageFolderDataset(source, resolution, strict=strict)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    n = len(ds)
    if dest.suffix.lower() == ".npy":
        arr = np.lib.format.open_memmap(str(dest) + ".tmp.npy", mode="w+", dtype=np.uint8, shape=(n, ds.channels, resolution, resolution))
        labels = np.zeros(n, dtype=np.int64)
        for i in range(n):
            img, lab = ds[i]
            arr[i], labels[i] = img.numpy(), lab
        arr.flush()
        del arr
        os.replace(str(dest) + ".tmp.npy", dest)
        np.save(_labels_path(dest), labels)
        _meta_path(dest).write_text(json.dumps({"classes": ds.classes, "num_classes": ds.num_classes, "source": str(source)}) + "\n")
    elif dest.suffix.lower() == ".zip":
        tmp = dest.with_name(dest.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for i in range(n):
                img, lab = ds[i]
                a = img.numpy()
                im = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
                buf = io.BytesIO()
                im.save(buf, format="PNG")
                folder = f"{ds.classes[lab]}/" if ds.classes else ""
                zf.writestr(f"{folder}{i:08d}.png", buf.getvalue())
        os.replace(tmp, dest)
    else:
        raise ValueError(f"dest: expected a .npy or .zip path, got {dest}")
    skipped = len(ds.skipped) + ds.decode_failures
    return f"packed {n} images ({ds.channels}x{resolution}x{resolution}, {ds.num_classes} classes) into {dest}; skipped {skipped} unreadable"


def _labels_path(p: Path) -> Path:
    return p.with_name(p.stem + ".labels.npy")


def _meta_path(p: Path) -> Path:
    return p.with_name(p.stem + ".json")


def load_packed(path) -> tuple[torch.Tensor, Optional[torch.Tensor], int]:
    """A ``fastgan prepare`` .npy (no pickles): (uint8 (N, C, R, R), labels or None, classes)."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e})") from e
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise ValueError(f"{path}: expected uint8 (N, C, H, W), got {arr.dtype} {arr.shape}")
    images = torch.from_numpy(np.ascontiguousarray(arr))
    labels, nc = None, 0
    lp = _labels_path(path)
    if lp.is_file():
        lab = np.load(lp, allow_pickle=False)
        if lab.shape != (arr.shape[0],):
            raise ValueError(f"{lp}: {lab.shape} labels for {arr.shape[0]} images")
        labels = torch.from_numpy(lab.astype(np.int64))
    mp = _meta_path(path)
    if mp.is_file():
        nc = int(json.loads(mp.read_text()).get("num_classes", 0))
    elif labels is not None:
        nc = int(labels.max()) + 1
    return images, labels, nc
