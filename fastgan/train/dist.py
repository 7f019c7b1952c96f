"""Distributed helpers: torchrun's environment -> process group; gradient averaging.

Gradients are averaged with one all-reduce of a flattened buffer per optimizer step
instead of wrapping the models in DistributedDataParallel: a GAN's D runs several times per
step (real, fake, G's step, penalties with double backward), which DDP's reducer does not
follow; explicit averaging is exact and simple.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    if pref == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(pref)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {pref!r} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(device_pref: str = "auto") -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=pick_device(device_pref))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_pref, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, device)


def average_gradients(module: torch.nn.Module, info: DistInfo) -> None:
    if not info.enabled:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(info.world)
    i = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[i:i + n].view_as(p).clone()
        i += n


def broadcast_module(module: torch.nn.Module, info: DistInfo, buffers_only: bool = False) -> None:
    if not info.enabled:
        return
    tensors = list(module.buffers()) if buffers_only else list(module.state_dict().values())
    for t in tensors:
        if t.is_floating_point() or not buffers_only:
            dist.broadcast(t.data if hasattr(t, "data") else t, 0)


def average_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Running statistics (batch norm) averaged across ranks, so every rank holds the same model."""
    if not info.enabled:
        return
    bufs = [b for b in module.buffers() if b.is_floating_point()]
    if not bufs:
        return
    flat = torch.cat([b.reshape(-1) for b in bufs])
    dist.all_reduce(flat)
    flat.div_(info.world)
    i = 0
    for b in bufs:
        b.copy_(flat[i:i + b.numel()].view_as(b))
        i += b.numel()


def any_flag(flag: bool, info: DistInfo) -> bool:
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def gather_objects(obj, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def average_scalar(value, info: DistInfo) -> torch.Tensor:
    """The mean over ranks of a scalar (a 0-d tensor or a number), as a float32 tensor."""
    t = torch.as_tensor(value, dtype=torch.float32, device=info.device).reshape(())
    if info.enabled:
        t = t.clone()
        dist.all_reduce(t)
        t.div_(info.world)
    return t
