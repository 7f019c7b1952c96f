"""Seconds per iteration and peak memory of the large StyleGAN2 presets, fastgan's layer kit
against stock PyTorch (the same models and weights under ``fastgan.use_layers("stock")``).

    .venv/bin/python bench/hires_presets.py [--presets stylegan2-512,stylegan2-1024] [--batch 1]
                                            [--warmup 1] [--rounds 1] [--lean]

One iteration is the trainer's own (``fastgan.benchmark.cases._HiresStep``): the D step with
R1 and the G step with style mixing and the path-length penalty, both regularizers due,
Adam steps and the EMA update. The kits alternate round by round. Peak memory is
``fastgan.benchmark.runner.step_peak_bytes`` of each timed iteration: on the CPU the growth
of the peak resident set size over the models and optimizer state already allocated.
Prints one Markdown row per preset: medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fastgan.benchmark.cases import _HiresStep
from fastgan.benchmark.runner import step_peak_bytes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="stylegan2-512,stylegan2-1024")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--lean", action="store_true", help="activation checkpointing (checkpoint_blocks) in both kits")
    args = p.parse_args()
    dev = torch.device("cpu")
    print("| preset | G / D params | batch | fastgan s/it | stock s/it | speed-up | fastgan peak MiB | stock peak MiB | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets.split(","):
        # batch 1: the path length on the one sample (pl_batch_shrink 1)
        _HiresStep.SIZES["bench"] = (preset, {"pl_batch_shrink": 1} if args.batch == 1 else {})
        _HiresStep.BATCH = args.batch
        steps = {kit: _HiresStep(args.lean, kit) for kit in ("fastgan", "stock")}
        for s in steps.values():
            s.configure(dev, torch.float32, "contiguous", "bench")
        G, D = steps["fastgan"].trainer.G, steps["fastgan"].trainer.D
        nG, nD = (sum(q.numel() for q in m.parameters()) for m in (G, D))
        r = G.resolution
        gen = torch.Generator().manual_seed(0)
        real = torch.rand((args.batch, 3, r, r), generator=gen) * 2 - 1
        times = {k: [] for k in steps}
        peaks = {k: [] for k in steps}
        for i in range(args.warmup + args.rounds):
            for kit, s in steps.items():
                t0 = time.perf_counter()
                peak = step_peak_bytes(s, (real,), dev)
                dt = time.perf_counter() - t0
                if i >= args.warmup:
                    times[kit].append(dt)
                    peaks[kit].append(peak)
        tf, ts = statistics.median(times["fastgan"]), statistics.median(times["stock"])
        pf, ps = (statistics.median(peaks[k]) / 2 ** 20 for k in ("fastgan", "stock"))
        print(f"| {preset}{' (lean)' if args.lean else ''} | {nG / 1e6:.2f}M / {nD / 1e6:.2f}M | {args.batch} | "
              f"{tf:.1f} | {ts:.1f} | {ts / tf:.2f}x | {pf:.0f} | {ps:.0f} | {pf / ps:.2f}x |", flush=True)
        del steps


if __name__ == "__main__":
    main()
