"""upfirdn2d, up=2 with the 4-tap separable filter [1, 3, 3, 1], (8, 128, 64, 64) float32
-> (8, 128, 128, 128), CPU: fastgan vs the reference (zero insertion + pad + depthwise
conv2d, eager) vs torch.compile of the reference, and a clone of an output-sized tensor
(the memory-bandwidth limit of writing the output).

    .venv/bin/python -m pytest bench/test_bench_upfirdn2d.py --benchmark-group-by=param:layout,param:mode

Every case is checked against the reference before it is timed; several input sets rotate
so that caches are not measured. FASTGAN_BENCH_UPFIRDN_SHAPE overrides the input shape.
"""

import itertools
import os

import pytest
import torch

from fastgan.ops import setup_filter, upfirdn2d, upfirdn2d_ref

SHAPE = tuple(int(s) for s in os.environ.get("FASTGAN_BENCH_UPFIRDN_SHAPE", "8,128,64,64").split(","))
N_SETS = 3
F_SEP = setup_filter([1, 3, 3, 1], separable=True)
PAD = [2, 1, 2, 1]  # upsample2d's padding for 4 taps: the output is exactly 2x the input
OUT_SHAPE = (SHAPE[0], SHAPE[1], SHAPE[2] * 2, SHAPE[3] * 2)


def reference(x):
    return upfirdn2d_ref(x, F_SEP, up=2, padding=PAD, gain=4)


_compiled = torch.compile(reference)


def fastgan_up(x):
    return upfirdn2d(x, F_SEP, up=2, padding=PAD, gain=4)


_out_like = {}


def clone(x):
    key = x.is_contiguous()
    if key not in _out_like:
        fmt = torch.contiguous_format if key else torch.channels_last
        _out_like[key] = torch.randn(OUT_SHAPE).to(memory_format=fmt)
    return _out_like[key].clone()


IMPLS = {"fastgan": fastgan_up, "eager": reference, "compile": _compiled, "clone": clone}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_upfirdn2d_up2(benchmark, impl, mode, layout):
    if impl == "clone" and mode == "fwd+bwd":
        pytest.skip("the copy limit is a forward-only reference")
    fn = IMPLS[impl]
    train = mode == "fwd+bwd"
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    g = torch.Generator().manual_seed(0)
    sets = [
        torch.randn(SHAPE, generator=g).to(memory_format=fmt).requires_grad_(train)
        for _ in range(N_SETS)
    ]
    grads = [torch.randn(OUT_SHAPE, generator=g).to(memory_format=fmt) for _ in range(N_SETS)]
    if impl != "clone":  # correctness before timing, values and input gradients
        x = sets[0].detach().requires_grad_()
        xr = sets[0].detach().requires_grad_()
        y, r = fn(x), reference(xr)
        torch.testing.assert_close(y, r, rtol=1e-5, atol=1e-5)
        y.backward(grads[0])
        r.backward(grads[0])
        torch.testing.assert_close(x.grad, xr.grad, rtol=1e-5, atol=1e-5)
    cycle = itertools.cycle(range(N_SETS))

    def run():
        i = next(cycle)
        x = sets[i]
        if train:
            y = fn(x)
            x.grad = None
            y.backward(grads[i])
        else:
            with torch.no_grad():
                fn(x)

    for _ in range(2):  # warm-up, includes torch.compile's compilation
        run()
    benchmark.pedantic(run, rounds=int(os.environ.get("FASTGAN_BENCH_ROUNDS", "15")), iterations=1, warmup_rounds=1)
