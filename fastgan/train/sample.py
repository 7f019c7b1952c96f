"""Generating images from a checkpoint (``fastgan sample``)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import torch

from . import checkpoint as ck
from .build import build_models
from .config import TrainConfig, config_fields
from .images import generation_batch, save_grid, save_image


def load_generator(path, weights: str = "ema", device="cpu") -> tuple[torch.nn.Module, TrainConfig, int]:
    """(G in eval mode, its config, num_classes) from a checkpoint file or run folder."""
    p = Path(path)
    if p.is_dir():
        p = ck.resolve_resume(str(p), p)
    state = ck.load_checkpoint(p)
    saved = state["config"]
    known = config_fields()
    try:
        cfg = TrainConfig(**{k: v for k, v in saved.items() if k in known}).validate()
        nc = int(state.get("num_classes", 0))
    except (TypeError, ValueError) as e:
        raise ck.CheckpointError(f"{p}: corrupt fastgan checkpoint (its config: {e})") from None
    G, _ = build_models(cfg, nc)
    try:
        G.load_state_dict(state["G_ema" if weights == "ema" else "G"])
    except (RuntimeError, TypeError) as e:
        raise ck.CheckpointError(f"{p}: corrupt fastgan checkpoint (the generator weights do not fit its config: "
                                 f"{str(e).splitlines()[0]})") from e
    if hasattr(G, "set_progress"):
        # batch_size is the global batch since checkpoints say "batch": "global"; before, per process
        per_process = state.get("batch") != "global"
        kimg = int(state["step"]) * cfg.batch_size * (int(state.get("world_size", 1)) if per_process else 1) / 1000.0
        G.set_progress(kimg, cfg.phase_kimg)  # the stage the run had reached
    return G.to(device).eval(), cfg, nc


@torch.no_grad()
def generate(G, cfg: TrainConfig, n: int, num_classes: int = 0, labels: Optional[torch.Tensor] = None,
             seed: int = 0, truncation: float = 1.0, device="cpu", batch: Optional[int] = None) -> torch.Tensor:
    batch = batch or generation_batch(cfg.resolution)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, cfg.z_dim, generator=gen)
    if num_classes > 0 and labels is None:
        labels = torch.arange(n) % num_classes
    out = []
    for i in range(0, n, batch):
        args = [z[i:i + batch].to(device)]
        if labels is not None:
            args.append(labels[i:i + batch].to(device))
        kw = {"truncation": truncation} if truncation != 1.0 else {}
        if kw and not hasattr(G, "mapping"):
            raise ValueError("truncation: only the StyleGAN2-style model supports truncation")
        out.append(G(*args, **kw).float().cpu())
    return torch.cat(out)


def sample_command(args) -> Iterator[str]:
    G, cfg, nc = load_generator(args.checkpoint, args.weights, args.device)
    if args.n < 0 or args.grid < 1 or args.per_class < 0:
        raise ValueError("--n, --grid and --per-class must be positive")
    if args.per_class and nc == 0:
        raise ValueError("--per-class: the checkpoint's model is not conditional")
    if args.n > 0:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        imgs = generate(G, cfg, args.n, nc, seed=args.seed, truncation=args.truncation, device=args.device)
        for i, im in enumerate(imgs):
            name = f"{i:06d}" + (f"-class{i % nc}" if nc else "") + ".png"
            save_image((im + 1) / 2, folder / name)
        yield f"wrote {args.n} images to {folder}"
        return
    if nc and args.per_class:
        labels = torch.arange(nc).repeat_interleave(args.per_class)
        imgs = generate(G, cfg, len(labels), nc, labels=labels, seed=args.seed, truncation=args.truncation, device=args.device)
        path = save_grid(imgs, args.out, nrow=args.per_class)
        yield f"wrote a grid of {args.per_class} images per class (one row each, {nc} classes) to {path}"
        return
    imgs = generate(G, cfg, args.grid, nc, seed=args.seed, truncation=args.truncation, device=args.device)
    path = save_grid(imgs, args.out, nrow=nc if nc and nc <= 16 else None)
    yield f"wrote a grid of {args.grid} images to {path}"
