"""Two measurements behind the README's notes on StyleGAN2's modulated convolutions, in the
`train_stylegan2` bench configuration (64 px, batch 8, max 128 channels, float32, CPU):

    .venv/bin/python bench/modconv_ab.py lean [--rounds 16]
    .venv/bin/python bench/modconv_ab.py epilogue [--rounds 10]

``lean``: the whole training step (D step, R1, G step, Adam: ``_TrainStep``) with the
modulated convolutions' product ``x * style`` not saved for backward
(``fastgan.ops.conv2d_gradfix.scaled_input_conv2d``, the default) against the composed form
that saves it; interleaved rounds, the order alternating, medians and the median of the
paired ratios.

``epilogue``: an upper bound of what fusing noise and demodulation into the FIR + bias +
activation epilogue of G's up-sampling convolutions could gain. G's forward + backward
with those layers as they are, against the same with their whole epilogue (noise,
demodulation, bias, activation) removed -- a different function, timed only.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time

import torch

from fastgan.benchmark.cases import _train_config, _train_inputs, _TrainStep
from fastgan.nn.modulated import ModulatedConv2d
from fastgan.ops.conv2d_resample import conv2d_resample
from fastgan.train.build import build_models

_gf = importlib.import_module("fastgan.ops.conv2d_gradfix")


def _interleaved(run, setups: dict, rounds: int) -> dict:
    times = {k: [] for k in setups}
    for k, setup in setups.items():  # warm-up
        setup()
        run()
        run()
    keys = list(setups)
    for r in range(rounds):
        for k in (keys if r % 2 else keys[::-1]):
            setups[k]()
            t = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - t)
    return times


def _report(times: dict) -> None:
    for k, v in times.items():
        print(f"{k}: median {statistics.median(v):.3f} s over {len(v)} rounds")
    a, b = list(times.values())
    print(f"paired ratio {list(times)[0]} / {list(times)[1]}: median "
          f"{statistics.median([x / y for x, y in zip(a, b)]):.3f}")


def lean(rounds: int) -> None:
    step = _TrainStep("stylegan2", "fastgan")
    step.configure("cpu", torch.float32, "contiguous", "full")
    inputs = _train_inputs("stylegan2")("cpu", torch.float32, "contiguous", "full", torch.Generator().manual_seed(0))
    default = _gf._SCALED_MIN_NUMEL

    def use(v):
        return lambda: setattr(_gf, "_SCALED_MIN_NUMEL", v)

    _report(_interleaved(lambda: step(*inputs), {"lean": use(default), "composed": use(1 << 62)}, rounds))
    _gf._SCALED_MIN_NUMEL = default


def _without_epilogue(self, x, w):
    if not self.up:
        return _forward(self, x, w)
    xs = (x * self.affine(w)[:, :, None, None]).contiguous(memory_format=torch.channels_last)
    wx = (self.weight * self.scale).contiguous(memory_format=torch.channels_last)
    return conv2d_resample(xs, wx, self.fir_taps.float(), up=2, padding=self.k // 2, flip_weight=False)


_forward = ModulatedConv2d.forward


def epilogue(rounds: int) -> None:
    cfg = _train_config("stylegan2", "full")
    torch.manual_seed(0)
    G, _ = build_models(cfg, 0)
    z = torch.randn(cfg.batch_size, cfg.z_dim)

    def run():
        G.zero_grad(set_to_none=True)
        G(z).square().mean().backward()

    def use(fwd):
        return lambda: setattr(ModulatedConv2d, "forward", fwd)

    _report(_interleaved(run, {"with epilogue": use(_forward), "without": use(_without_epilogue)}, rounds))
    ModulatedConv2d.forward = _forward


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["lean", "epilogue"])
    p.add_argument("--rounds", type=int, default=None)
    a = p.parse_args()
    (lean if a.what == "lean" else epilogue)(a.rounds or (16 if a.what == "lean" else 10))
