"""Score one fmnist-dcgan variant: train it, then classifier FID/KID of G_ema at several EMA betas.

    OMP_NUM_THREADS=1 python bench/tune_fmnist_dcgan.py NAME '{"batch_size": 128, "steps": 1800}' [OUT_ROOT]

Trains the fmnist-dcgan preset with the JSON overrides through the ordinary Trainer (the same
weights `fastgan train` would produce for that config), keeps extra EMA copies of G (they do
not feed back into training), and prints one JSON line: steps, batch, wall and CPU seconds of
the training (process rusage), and (fid_classifier, kid_classifier) on 5000 samples for
each beta. Needs the cached Fashion-MNIST classifier (`fastgan eval --train-classifier`).
Writes OUT_ROOT/NAME (default /tmp/fmnist-dcgan-tune) and appends to OUT_ROOT/results.jsonl.
"""

import copy
import json
import resource
import sys
import time
from pathlib import Path

import torch

from fastgan.metrics import GeneratorSource, compute_metrics
from fastgan.train.config import make_config
from fastgan.train.images import save_grid
from fastgan.train.loop import Trainer, ema_update

BETAS = (0.95, 0.99, 0.995, 0.999)


class _MultiEMATrainer(Trainer):
    def _g_step(self, batch):
        out = super()._g_step(batch)
        if not hasattr(self, "emas"):
            self.emas = {b: copy.deepcopy(self.G_ema) for b in BETAS}
        for b, m in self.emas.items():  # same warm-up as the loop's EMA
            ema_update(m, self.G, min(b, (1.0 + self.step) / (10.0 + self.step)))
        return out


def main(argv):
    name, over = argv[0], json.loads(argv[1] if len(argv) > 1 else "{}")
    root = Path(argv[2] if len(argv) > 2 else "/tmp/fmnist-dcgan-tune")
    over.setdefault("out", str(root / name))
    over.update(progress=False, tensorboard=False)
    cfg = make_config("fmnist-dcgan", overrides=over)
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    tr = _MultiEMATrainer(cfg)
    tr.run()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    res = {"name": name, "over": over, "steps": cfg.steps, "batch": cfg.batch_size,
           "threads": torch.get_num_threads(), "wall_s": round(time.perf_counter() - t0, 1),
           "cpu_s": round(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, 1)}
    for b, g in tr.emas.items():
        g.eval()
        m = compute_metrics("fid_classifier,kid_classifier", GeneratorSource(g, latent_dim=cfg.z_dim), num_gen=5000)
        res[f"ema{b}"] = (round(m["fid_classifier"]["value"], 2), round(m["kid_classifier"]["value"], 2))
        with torch.no_grad():
            save_grid(g(tr.fixed_z).float(), Path(cfg.out) / f"grid_ema{b}.png", scale=2)
    print(json.dumps(res), flush=True)
    with open(root / "results.jsonl", "a") as fh:
        fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
