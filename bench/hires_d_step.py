"""Peak memory and time of the parts of StyleGAN2's D step with R1, in one layer kit: the
fakes' generation (no grad), D's forward + backward on the fakes, and D's forward on the
reals with R1's first backward, then with the second backward too (the trainer's order).

    .venv/bin/python bench/hires_d_step.py fastgan|stock [--size full|quick] [--repeat 2]

Models and loss: ``fastgan.benchmark.cases._HiresStep`` (full = ``stylegan2-1024``, quick =
``stylegan2-256``, batch 2). Peak memory: ``fastgan.benchmark.runner.step_peak_bytes``
(CPU: growth of the peak resident set size over what was allocated before the part), MiB.
"""

from __future__ import annotations

import argparse
import time

import torch

from fastgan import losses, use_layers
from fastgan.benchmark.cases import _HiresStep
from fastgan.benchmark.runner import step_peak_bytes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kit", choices=["fastgan", "stock"])
    p.add_argument("--size", default="full", choices=["quick", "full", "tiny"])
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    dev = torch.device("cpu")
    s = _HiresStep(False, args.kit)
    s.configure(dev, torch.float32, "contiguous", args.size)
    t = s.trainer
    r, n = t.cfg.resolution, _HiresStep.BATCH
    real = torch.rand((n, t.cfg.img_channels, r, r), generator=torch.Generator().manual_seed(0)) * 2 - 1
    kept = {}

    def gen():
        with torch.no_grad():
            kept["fake"] = t._fake(t._latents(n), ())

    def d_fake():
        losses.d_loss_fake(t.D_fwd(kept["fake"]), t.cfg.loss).backward()

    def d_real_r1(second: bool):
        loss, r1 = losses.d_loss_with_r1(t.D_fwd, real, None, t.cfg.r1_gamma, t.cfg.loss)
        if second:
            (loss + r1 * t.cfg.r1_every).backward()

    parts = (("generate fakes", gen), ("D on fakes", d_fake),
             ("D on reals + R1, first backward", lambda: d_real_r1(False)),
             ("D on reals + R1, both backwards", lambda: d_real_r1(True)))
    with use_layers(args.kit):
        for _ in range(args.repeat):
            for name, fn in parts:
                t0 = time.perf_counter()
                peak = step_peak_bytes(fn, (), dev) / 2 ** 20
                print(f"{args.kit} {r} px: {name}: {peak:.0f} MiB, {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
