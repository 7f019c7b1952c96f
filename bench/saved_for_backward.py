"""Bytes saved for backward in one StyleGAN2 64 px iteration (the `train_stylegan2` bench
configuration: batch 8, max 128 channels), in a layer kit:

    .venv/bin/python bench/saved_for_backward.py fastgan
    .venv/bin/python bench/saved_for_backward.py stock

Counts the unique storages that autograd saves (torch.autograd.graph.saved_tensors_hooks),
parameters excluded, for the G step and for the D step with R1 (the penalty's double
backward included). Every saved tensor is kept alive while counting, so no storage is
freed and its address reused by another."""

import sys

import torch

import fastgan
from fastgan import losses
from fastgan.benchmark.cases import _train_config
from fastgan.train.build import build_models


def main(kit: str) -> None:
    cfg = _train_config("stylegan2", "full")
    torch.manual_seed(0)
    G, D = build_models(cfg, 0)
    params = {p.data_ptr() for m in (G, D) for p in m.parameters()}
    seen, keep = {}, []

    def pack(t):
        keep.append(t)
        if t.data_ptr() not in params and t.data_ptr() != 0:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    z = torch.randn(cfg.batch_size, cfg.z_dim)
    real = torch.rand(cfg.batch_size, cfg.img_channels, cfg.resolution, cfg.resolution) * 2 - 1
    out = {}
    with fastgan.use_layers(kit):
        for name, fn in (("G step", lambda: losses.g_loss(D(G(z)))),
                         ("D step + R1", lambda: losses.d_loss(D(real), D(G(z).detach()))
                          + losses.r1_penalty(D, real, 1.0))):
            seen.clear()
            keep.clear()
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = fn()
            out[name] = sum(seen.values()) / 2**20
            loss.backward()
    print(kit + ": " + ", ".join(f"{k} {v:.1f} MiB" for k, v in out.items()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fastgan")
