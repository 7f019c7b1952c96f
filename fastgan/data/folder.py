"""Image folders and zip archives of images (PNG/JPEG/... via Pillow), and packing them.

Labels come from the first-level sub-folders (sorted names = class 0, 1, ...); images at
the top level get class 0 and make the dataset unconditional when there are no
sub-folders. Every image is converted to the dataset's mode (L when the first image is
grayscale, else RGB), center-cropped to the largest centred square (the odd pixel goes to
the right / bottom) and resized to the target resolution with Pillow: ``Image.LANCZOS`` when
shrinking (a windowed sinc, antialiased: no moire from downscaling large photos) and
``Image.BICUBIC`` when enlarging (Lanczos' extra lobes only add ringing there). An image
already at the resolution is not resampled.
An unreadable image is skipped and counted (``strict=True``: an error naming the file).
Zip member names are checked: absolute paths and ``..`` components are refused.

Packing (:func:`prepare`) streams: one image is decoded at a time and its bytes are written
straight into the .npy file (no memory map of the output, whose written pages would stay in
the writer's resident set), so memory stays flat for any number of images. A packed .npy is
never loaded whole: :func:`load_packed` returns a view of its memory map and
:class:`PackedDataset` reads only the rows of each batch.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import zipfile
from pathlib import Path, PurePosixPath
from typing import Optional, Sequence, Union

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
    """Decodes, converts to ``mode``, center-crops and resizes (LANCZOS down, BICUBIC up):
    uint8 (C, R, R)."""
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
    def __init__(self, root: Union[str, os.PathLike], resolution: int, strict: bool = False,
                 progress: bool = False) -> None:
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
        # header check (cheap: Pillow reads the header only, from a zip member too); unreadable
        # files are skipped. Only names and labels are kept: O(N) small objects, no pixels.
        self.files, labels, self.skipped, self.mode = [], [], [], None
        for name, _size in _progress(names, progress, "scanning"):
            try:
                with (self._open_member(name) if self.is_zip else open(self.root / name, "rb")) as f, Image.open(f) as im:
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

    def _zipfile(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():  # one handle per worker process
            self._zip = zipfile.ZipFile(self.root)
            self._zip_pid = os.getpid()
        return self._zip

    def _read(self, name: str) -> bytes:
        return self._zipfile().read(name)

    def _open_member(self, name: str):
        return self._zipfile().open(name)  # seekable: Pillow reads the header only

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


_FLUSH_BYTES = 256 << 20  # prepare: hand written pages to the disk every 256 MiB


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="img", dynamic_ncols=True, file=sys.stderr)


def prepare(source, dest, resolution: int, strict: bool = False, progress: Optional[bool] = None) -> str:
    """Packs ``source`` (folder or zip) at ``resolution`` into ``dest``: a .npy of uint8
    (N, C, R, R) plus ``<dest>.labels.npy`` and ``<dest>.json`` (classes), or a .zip of PNGs.

    Streams: one image in memory at a time, written to ``<dest>.tmp`` and renamed when
    complete. ``progress``: a tqdm bar on stderr (None: when stderr is a terminal)."""
    from PIL import Image

    if progress is None:
        progress = sys.stderr.isatty()
    dest = Path(dest)
    if dest.suffix.lower() not in (".npy", ".zip"):
        raise ValueError(f"dest: expected a .npy or .zip path, got {dest}")
    ds = ImageFolderDataset(source, resolution, strict=strict, progress=progress)
    dest.parent.mkdir(parents=True, exist_ok=True)
    n = len(ds)
    if dest.suffix.lower() == ".npy":
        tmp = dest.with_name(dest.name + ".tmp")
        labels = np.zeros(n, dtype=np.int64)
        shape = (n, ds.channels, resolution, resolution)
        try:
            with open(tmp, "wb") as f:
                np.lib.format.write_array_header_1_0(f, {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": shape})
                unsynced = 0
                for i in _progress(range(n), progress, "packing"):
                    img, lab = ds[i]
                    f.write(img.numpy().tobytes())
                    labels[i] = lab
                    unsynced += img.numel()
                    if unsynced >= _FLUSH_BYTES:  # bound the dirty pages a big pack leaves behind
                        f.flush()
                        os.fsync(f.fileno())
                        unsynced = 0
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()
        np.save(_labels_path(dest), labels)
        _meta_path(dest).write_text(json.dumps({"classes": ds.classes, "num_classes": ds.num_classes, "source": str(source)}) + "\n")
    else:
        tmp = dest.with_name(dest.name + ".tmp")
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                for i in _progress(range(n), progress, "packing"):
                    img, lab = ds[i]
                    a = img.numpy()
                    im = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
                    buf = io.BytesIO()
                    im.save(buf, format="PNG")
                    folder = f"{ds.classes[lab]}/" if ds.classes else ""
                    zf.writestr(f"{folder}{i:08d}.png", buf.getvalue())
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()
    skipped = len(ds.skipped) + ds.decode_failures
    return f"packed {n} images ({ds.channels}x{resolution}x{resolution}, {ds.num_classes} classes) into {dest}; skipped {skipped} unreadable"


def _labels_path(p: Path) -> Path:
    return p.with_name(p.stem + ".labels.npy")


def _meta_path(p: Path) -> Path:
    return p.with_name(p.stem + ".json")


def open_packed_array(path, mode: str = "r") -> np.memmap:
    """The images of a ``fastgan prepare`` .npy, memory-mapped (nothing is read yet): uint8
    (N, C, H, W). ``mode`` "c" (copy-on-write) makes it writable in memory, never on disk."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode=mode)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e})") from e
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 4:
        raise ValueError(f"{path}: expected uint8 (N, C, H, W), got {getattr(arr, 'dtype', type(arr).__name__)} "
                         f"{getattr(arr, 'shape', '')}")
    return arr


def _packed_labels(path: Path, n: int) -> tuple[Optional[torch.Tensor], int]:
    labels, nc = None, 0
    lp = _labels_path(path)
    if lp.is_file():
        try:
            lab = np.load(lp, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{lp}: not a readable .npy array ({e})") from e
        if lab.shape != (n,) or lab.dtype.kind not in "iu":
            raise ValueError(f"{lp}: {lab.dtype} {lab.shape} labels for {n} images (expected integer ({n},))")
        labels = torch.from_numpy(lab.astype(np.int64))
    mp = _meta_path(path)
    if mp.is_file():
        try:
            nc = int(json.loads(mp.read_text()).get("num_classes", 0))
        except (OSError, ValueError, AttributeError, TypeError) as e:
            raise ValueError(f"{mp}: not a fastgan prepare metadata file ({e})") from e
    elif labels is not None and len(labels):
        nc = int(labels.max()) + 1
    return labels, nc


def load_packed(path) -> tuple[torch.Tensor, Optional[torch.Tensor], int]:
    """A ``fastgan prepare`` .npy (no pickles): (uint8 (N, C, R, R), labels or None, classes).

    The images are a zero-copy view of a copy-on-write memory map: opening reads nothing,
    indexing reads only the rows it touches (the file is never written)."""
    path = Path(path)
    arr = open_packed_array(path, mode="c")
    labels, nc = _packed_labels(path, arr.shape[0])
    return torch.from_numpy(arr), labels, nc


class PackedDataset(Dataset):
    """A ``fastgan prepare`` .npy as a map-style dataset that stays on disk. ``ds[i]`` ->
    (uint8 (C, H, W), label); :meth:`get_batch` -> a batch's (uint8 (B, C, H, W), labels).

    Rows are read with positioned file reads into a fresh array, one read per row: a training
    epoch over a memory map would leave every page it touched mapped in the process (file
    pages the kernel can reclaim, but counted in its RSS and in the OOM killer's score). The
    memory map (:meth:`array`) serves the fingerprint and random access for evaluation. Each
    process (DataLoader workers too) opens its own file; pickling sends the path, never pixels."""

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        self.path = Path(path)
        arr = open_packed_array(self.path)
        self.shape = tuple(int(s) for s in arr.shape)
        self.offset = int(arr.offset)  # the .npy header's length
        self.row_bytes = int(np.prod(self.shape[1:]))
        self.file_size = self.path.stat().st_size
        if self.file_size < self.offset + self.shape[0] * self.row_bytes:
            raise ValueError(f"{self.path}: truncated ({self.file_size} bytes for {self.shape} uint8)")
        self.labels, self.num_classes = _packed_labels(self.path, self.shape[0])
        self._arr: Optional[np.memmap] = arr
        self._pid = os.getpid()
        self._fh = None
        self._fh_pid = None

    @property
    def channels(self) -> int:
        return self.shape[1]

    def array(self) -> np.memmap:
        if self._arr is None or self._pid != os.getpid():
            self._arr, self._pid = open_packed_array(self.path), os.getpid()
        return self._arr

    def _file(self):
        if self._fh is None or self._fh_pid != os.getpid():
            self._fh, self._fh_pid = open(self.path, "rb", buffering=0), os.getpid()
        return self._fh

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_arr"], d["_pid"], d["_fh"], d["_fh_pid"] = None, None, None, None
        return d

    def __len__(self) -> int:
        return self.shape[0]

    def _read_rows(self, indices: Sequence[int]) -> np.ndarray:
        out = np.empty((len(indices),) + self.shape[1:], np.uint8)
        f, n = self._file(), self.shape[0]
        for k, i in enumerate(indices):
            i = int(i)
            if not -n <= i < n:
                raise IndexError(f"{self.path}: row {i} of {n}")
            f.seek(self.offset + (i % n) * self.row_bytes)
            buf, got = memoryview(out[k].reshape(-1)), 0
            while got < self.row_bytes:  # raw reads may come back short
                r = f.readinto(buf[got:])
                if not r:
                    raise ValueError(f"{self.path}: truncated at row {i}")
                got += r
        return out

    def __getitem__(self, i: int):
        x = torch.from_numpy(self._read_rows([i])[0])
        return x, int(self.labels[i]) if self.labels is not None else 0

    def get_batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        x = torch.from_numpy(self._read_rows(indices))
        y = self.labels[torch.as_tensor(list(indices), dtype=torch.int64)] if self.labels is not None else None
        return x, y

    def fingerprint(self, rows: int = 16) -> str:
        """sha1 of the shape, file size, labels and ``rows`` evenly spaced whole rows: reads
        ``rows`` images, not the file."""
        arr, n = self.array(), self.shape[0]
        h = hashlib.sha1(f"packed-npy|{self.shape}|{self.file_size}|".encode())
        for i in sorted({round(k * (n - 1) / max(1, rows - 1)) for k in range(min(rows, n))}):
            h.update(np.ascontiguousarray(arr[i]).tobytes())
        if self.labels is not None:
            h.update(self.labels.numpy().tobytes())
        return h.hexdigest()[:16]

    def legacy_fingerprint(self) -> str:
        """The fingerprint packed sources had when they were loaded into memory (checkpoints
        written before they were memory-mapped hold it): 65536 strided bytes of the flat array
        plus the labels. Reads up to 65536 pages, so only computed when a resume needs it."""
        arr = self.array()
        h = hashlib.sha1()
        h.update(str(self.shape).encode())
        flat = arr.reshape(-1)
        step = max(1, flat.size // 65536)
        h.update(np.ascontiguousarray(flat[::step]).tobytes())
        if self.labels is not None:
            h.update(self.labels.numpy().tobytes())
        return h.hexdigest()[:16]
