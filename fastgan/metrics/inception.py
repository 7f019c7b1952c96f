"""The FID-standard InceptionV3 (the 2015-12-05 TensorFlow graph ported to PyTorch).

Parameter names and shapes follow the widely distributed ``pt_inception-2015-12-05`` weights
file, so its state dict loads with a strict key and shape check. The network differs from a
plain InceptionV3 as the TensorFlow graph does: the average pools inside the mixed blocks
exclude padding from the mean (``count_include_pad=False``), the last mixed block (Mixed_7c)
pools its fourth branch with a *max* pool, and the classifier has 1008 outputs.

Weights are never downloaded: pass a local path (``--inception-weights PATH`` or the
``FASTGAN_INCEPTION_WEIGHTS`` environment variable). Without one,
:func:`resolve_inception_weights` raises :class:`InceptionWeightsError` saying which file
is needed and where it is published.

Inputs: float images in [-1, 1] (N, C, H, W) or uint8 images in [0, 255]; C = 1 (tiled to
3 channels) or 3. They are resized to 299x299 with bilinear interpolation
(``align_corners=False``), as pytorch-fid does, then fed to the network, which expects
[-1, 1]. ``forward`` returns the 2048-d pool features; ``forward(x, return_logits=True)``
also the 1008 logits (for the Inception Score, softmax over them).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._safe_load import UnloadableFileError, load_weights_only

__all__ = [
    "FIDInceptionV3",
    "InceptionWeightsError",
    "INCEPTION_WEIGHTS_FILE",
    "INCEPTION_WEIGHTS_URL",
    "INCEPTION_WEIGHTS_ENV",
    "resolve_inception_weights",
    "load_fid_inception",
    "preprocess_images",
    "sha256_file",
]

INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_WEIGHTS_FILE
)
INCEPTION_WEIGHTS_ENV = "FASTGAN_INCEPTION_WEIGHTS"
RESIZE = 299
RESIZE_METHOD = "bilinear-299 (torch.nn.functional.interpolate, align_corners=False)"


class InceptionWeightsError(RuntimeError):
    """Missing, unreadable or mismatched Inception weights."""


class ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, as in the TF graph), ReLU.
    Submodule names ``conv``/``bn`` match the weights file."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg3(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class MixedA(nn.Module):  # Mixed_5b/5c/5d: 35x35
    def __init__(self, cin: int, pool_ch: int):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_ch, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x)),
        ], 1)


class ReduceB(nn.Module):  # Mixed_6a: 35x35 -> 17x17
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class MixedC(nn.Module):  # Mixed_6b..6e: 17x17 with factorized 7x7
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class ReduceD(nn.Module):  # Mixed_7a: 17x17 -> 8x8
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class MixedE(nn.Module):  # Mixed_7b (average pool branch), Mixed_7c (max pool branch)
    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        a = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        # The TF graph's last block max-pools here (a quirk of that graph, kept for FID).
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(a), self.branch3x3_2b(a),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(nn.Module):
    """InceptionV3 as in the FID weights file; ``forward`` gives (N, 2048) pool features."""

    num_features = 2048
    num_classes = 1008

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = MixedA(192, 32)
        self.Mixed_5c = MixedA(256, 64)
        self.Mixed_5d = MixedA(288, 64)
        self.Mixed_6a = ReduceB(288)
        self.Mixed_6b = MixedC(768, 128)
        self.Mixed_6c = MixedC(768, 160)
        self.Mixed_6d = MixedC(768, 160)
        self.Mixed_6e = MixedC(768, 192)
        self.Mixed_7a = ReduceD(768)
        self.Mixed_7b = MixedE(1280, max_pool=False)
        self.Mixed_7c = MixedE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)
        self.eval()
        self.requires_grad_(False)

    def train(self, mode: bool = True):
        # Batch norm always uses the stored statistics: this network is a fixed feature map.
        return super().train(False)

    def forward(self, x: torch.Tensor, return_logits: bool = False):
        x = preprocess_images(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        feats = x.mean(dim=(2, 3))
        if return_logits:
            return feats, self.fc(feats)
        return feats


def preprocess_images(x: torch.Tensor, size: int = RESIZE) -> torch.Tensor:
    """uint8 [0, 255] or float [-1, 1] images (N, 1|3, H, W) -> float32 [-1, 1], 3 channels,
    bilinearly resized to size x size."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images: expected (N, 1 or 3, H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 127.5 - 1.0
    elif not x.is_floating_point():
        raise TypeError(f"images: expected uint8 or floating point, got {x.dtype}")
    else:
        x = x.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


def sha256_file(path: Union[str, os.PathLike]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_inception_weights(path: Union[str, os.PathLike, None] = None) -> Path:
    """The weights path: the argument, else $FASTGAN_INCEPTION_WEIGHTS; raises with the
    download location (for the user to fetch; fastgan never downloads) if neither is set."""
    path = path or os.environ.get(INCEPTION_WEIGHTS_ENV) or None
    if path is None:
        raise InceptionWeightsError(
            f"Inception-based metrics need the FID Inception weights file {INCEPTION_WEIGHTS_FILE}, "
            f"published at {INCEPTION_WEIGHTS_URL} . fastgan never downloads weights: fetch the file "
            f"yourself and pass --inception-weights PATH (or set {INCEPTION_WEIGHTS_ENV}=PATH). "
            "Without it, use the offline metric fid_classifier (see --train-classifier)."
        )
    path = Path(path).expanduser()
    if not path.is_file():
        raise InceptionWeightsError(
            f"{path}: no such Inception weights file (expected {INCEPTION_WEIGHTS_FILE} from {INCEPTION_WEIGHTS_URL})"
        )
    return path


def _expected_state() -> Dict[str, Tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in FIDInceptionV3().state_dict().items()}


def load_fid_inception(path: Union[str, os.PathLike, None] = None, device="cpu") -> Tuple[FIDInceptionV3, str]:
    """Builds the network and loads weights from a local file (untrusted: weights_only).

    Every expected parameter and buffer must be present with the expected shape, and no
    unexpected key may appear; ``num_batches_tracked`` counters (written by some PyTorch
    versions, unused in eval) may be absent. Returns (model, sha256 of the file).
    """
    path = resolve_inception_weights(path)
    try:
        state = load_weights_only(path, "PyTorch weights file")
    except UnloadableFileError as e:  # corrupt, or a pickle of Python objects
        raise InceptionWeightsError(str(e)) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InceptionWeightsError(f"{path}: expected a state dict of tensors")
    expected = _expected_state()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k}: file {tuple(state[k].shape)}, expected {expected[k]}"
                   for k in set(state) & set(expected) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        parts = []
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                more = f" ... ({len(items)} in all)" if len(items) > 5 else ""
                parts.append(f"{title}: {', '.join(items[:5])}{more}")
        raise InceptionWeightsError(
            f"{path}: does not match the FID Inception layout of {INCEPTION_WEIGHTS_FILE} ({INCEPTION_WEIGHTS_URL}); "
            + "; ".join(parts)
        )
    model = FIDInceptionV3()
    model.load_state_dict(state, strict=False)  # keys checked above; counters may be absent
    return model.to(device), sha256_file(path)
