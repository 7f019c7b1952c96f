"""Two measurements behind the README's notes on StyleGAN2's modulated convolutions, in the
`train_stylegan2` bench configuration (64 px, batch 8, max 128 channels, float32, CPU):

    .venv/bin/python bench/modconv_ab.py lean [--rounds 16]
    .venv/bin/python bench/modconv_ab.py epilogue [--rounds 10]
    .venv/bin/python bench/modconv_ab.py profile

``lean``: the whole training step (D step, R1, G step, Adam: ``_TrainStep``) with the
modulated convolutions' product ``x * style`` not saved for backward
(``fastgan.ops.conv2d_gradfix.scaled_input_conv2d``, the default) against the composed form
that saves it; interleaved rounds, the order alternating, medians and the median of the
paired ratios.

``epilogue``: an upper bound of what fusing noise and demodulation into the FIR + bias +
activation epilogue of G's up-sampling convolutions could gain. G's forward + backward
with those layers as they are, against the same with their whole epilogue (noise,
demodulation, bias, activation) removed -- a different function, timed only.

``profile``: where the time of the ``train_stylegan2`` and ``r1_step`` bench steps goes, per
layer kit (torch.profiler's self CPU time over two steps).
"""

from __future__ import annotations

import argparse
import importlib
import statistics

import torch

from fastgan.benchmark.cases import _PenaltyStep, _penalty_inputs, _train_config, _train_inputs, _TrainStep
from fastgan.benchmark.runner import _time_interleaved
from fastgan.nn.modulated import ModulatedConv2d
from fastgan.ops.conv2d_resample import conv2d_resample
from fastgan.train.build import build_models

_gf = importlib.import_module("fastgan.ops.conv2d_gradfix")


def _interleaved(run, setups: dict, rounds: int) -> dict:
    """Per-round seconds of ``run`` after each setup, timed by the bench harness's own
    interleaving (the setups take turns within every round, the first one rotating)."""
    fns = [lambda setup=setup: (setup(), run()) for setup in setups.values()]
    stats = _time_interleaved(fns, [()], [None], torch.device("cpu"), rounds, 2, step=True)
    return {k: list(st.data) for k, st in zip(setups, stats)}


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


def profile() -> None:
    """Self CPU time per kit over two steps of each bench case (torch.profiler): the totals,
    and the convolutions' share."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    gen = torch.Generator().manual_seed(0)
    for name, make, inputs in (("train_stylegan2", lambda k: _TrainStep("stylegan2", k), _train_inputs("stylegan2")),
                               ("r1_step", lambda k: _PenaltyStep("r1", k), _penalty_inputs("r1"))):
        for kit in ("fastgan", "stock"):
            step = make(kit)
            step.configure("cpu", torch.float32, "contiguous", "full")
            args = inputs("cpu", torch.float32, "contiguous", "full", gen)
            step(*args)
            step(*args)
            with torch_profile(activities=[ProfilerActivity.CPU]) as p:
                for _ in range(2):
                    step(*args)
            times = {e.key: e.self_cpu_time_total / 2e3 for e in p.key_averages()}
            total = sum(times.values())
            conv = sum(v for k, v in times.items() if k in ("aten::convolution_backward", "aten::mkldnn_convolution"))
            fused = sum(v for k, v in times.items() if k.startswith("fastgan::"))
            print(f"{name} {kit}: {total:.0f} ms per step (self CPU time); convolutions {100 * conv / total:.0f}%, "
                  f"fastgan ops {100 * fused / total:.0f}%")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["lean", "epilogue", "profile"])
    p.add_argument("--rounds", type=int, default=None)
    a = p.parse_args()
    if a.what == "profile":
        profile()
    else:
        (lean if a.what == "lean" else epilogue)(a.rounds or (16 if a.what == "lean" else 10))
