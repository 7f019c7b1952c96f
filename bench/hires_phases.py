"""Peak memory of each phase of a StyleGAN2 training iteration, with and without activation
checkpointing (``checkpoint_blocks``), in one layer kit.

    .venv/bin/python bench/hires_phases.py fastgan|stock [--size quick|full|tiny] [--repeat 2]

Phases, each the trainer's own step (``fastgan.benchmark.cases._HiresStep``; quick = the
``stylegan2-256`` preset at batch 2): the D step with R1 (step 0), the G step with the
path length (step 0), the G step without it (step 1) and the D step without R1 (step 1).
Peak memory: ``fastgan.benchmark.runner.step_peak_bytes`` (CPU: growth of the peak resident
set size over what was allocated before the phase), MiB, one value per repeat.
"""

from __future__ import annotations

import argparse

import torch

from fastgan import use_layers
from fastgan.benchmark.cases import _HiresStep
from fastgan.benchmark.runner import step_peak_bytes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kit", choices=["fastgan", "stock"])
    p.add_argument("--size", default="quick", choices=["quick", "full", "tiny"])
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    dev = torch.device("cpu")
    for lean in (False, True):
        s = _HiresStep(lean, args.kit)
        s.configure(dev, torch.float32, "contiguous", args.size)
        t = s.trainer
        r = t.cfg.resolution
        real = torch.rand((_HiresStep.BATCH, t.cfg.img_channels, r, r), generator=torch.Generator().manual_seed(0)) * 2 - 1
        rows = {"D + R1": [], "G + path length": [], "G": [], "D": []}
        with use_layers(args.kit):
            for _ in range(args.repeat):
                for name, step, fn in (("D + R1", 0, lambda: t._d_step(real, None)),
                                       ("G + path length", 0, lambda: t._g_step(real.shape[0])),
                                       ("G", 1, lambda: t._g_step(real.shape[0])),
                                       ("D", 1, lambda: t._d_step(real, None))):
                    t.step = step
                    rows[name].append(step_peak_bytes(fn, (), dev) / 2 ** 20)
        print(f"{args.kit} {t.cfg.resolution} px, checkpoint_blocks={lean}: "
              + "; ".join(f"{k} {' / '.join(f'{v:.0f}' for v in vs)}" for k, vs in rows.items()), flush=True)


if __name__ == "__main__":
    main()
