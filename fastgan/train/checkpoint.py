"""Checkpoints: the full training state, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, Optional

import torch

from .._safe_load import UnloadableFileError, load_weights_only

FORMAT = "fastgan-checkpoint-v1"
BEST_NAME = "best.pt"
_NAME = re.compile(r"^ckpt-(\d{8,})\.pt$")


class CheckpointError(ValueError):
    """A missing or corrupt checkpoint, a file that is not a fastgan checkpoint, or one that does
    not belong to this run: bad input, like fastgan.data's IDXError."""


def rng_state() -> dict:
    """This process's RNG states as tensors and plain types (weights_only-loadable)."""
    py = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [py[0], list(py[1]), py[2]]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def all_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in module.state_dict().values() if t.is_floating_point())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: Path) -> Path:
    """torch.save to a temp file in the same folder, fsync, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def save_best(state: dict, folder: Path, modules: tuple = ()) -> Optional[Path]:
    """Writes best.pt atomically (never with non-finite weights; then returns None). It is not
    a ckpt-*.pt, so keep-last-N and ``--resume auto`` leave it alone."""
    for m in modules:
        if not all_finite(m):
            return None
    return atomic_save(dict(state, format=FORMAT), Path(folder) / BEST_NAME)


def list_checkpoints(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_path(folder: Path, step: int) -> Path:
    return Path(folder) / f"ckpt-{step:08d}.pt"


def save_checkpoint(state: dict, folder: Path, step: int, keep: int, modules: tuple = ()) -> Optional[Path]:
    """Writes ckpt-<step>.pt unless a module holds non-finite weights (then returns None and
    leaves the previous checkpoints alone); keeps the newest ``keep`` checkpoints."""
    for m in modules:
        if not all_finite(m):
            return None
    path = atomic_save(dict(state, format=FORMAT), checkpoint_path(folder, step))
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        try:
            old.unlink()
        except OSError:
            pass
    return path


def resolve_resume(resume: str, ckpt_dir: Path) -> Optional[Path]:
    """``auto``: the newest checkpoint in the run folder (None when there is none)."""
    if resume == "auto":
        found = list_checkpoints(ckpt_dir)
        return found[-1] if found else None
    p = Path(resume)
    if p.is_dir():
        found = list_checkpoints(p) or list_checkpoints(p / "checkpoints")
        if not found:
            raise CheckpointError(f"{p}: no ckpt-*.pt checkpoints in this folder")
        return found[-1]
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    return p


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """The checkpoint's state dict, loaded with ``torch.load(weights_only=True)``. Load on the CPU
    (the default) and let ``load_state_dict`` move the weights: the RNG states must stay there."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = load_weights_only(path, "fastgan checkpoint", map_location=map_location)
    except UnloadableFileError as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fastgan checkpoint (missing format tag {FORMAT!r})")
    for key in ("G", "D", "G_ema", "config", "step"):
        if key not in state:
            raise CheckpointError(f"{path}: corrupt fastgan checkpoint (lacks {key!r})")
    if not isinstance(state["config"], dict):
        raise CheckpointError(f"{path}: corrupt fastgan checkpoint (its config is not a mapping)")
    return state


def config_mismatch(saved: dict, current: dict, free_keys, defaults: Optional[dict] = None) -> list[str]:
    """The keys whose values differ, as messages; a key missing from ``saved`` (a checkpoint
    written before the option existed) counts as its value in ``defaults``."""
    defaults = defaults or {}
    diffs = []
    for k in sorted(set(saved) | set(current)):
        if k in free_keys:
            continue
        if saved.get(k, defaults.get(k)) != current.get(k):
            diffs.append(f"{k}: checkpoint {saved.get(k, defaults.get(k))!r}, this run {current.get(k)!r}")
    return diffs
