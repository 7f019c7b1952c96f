"""bias_act(act='lrelu') vs the stock eager composition vs torch.compile of it, on
(32, 256, 64, 64) float32, CPU, with two copy references: a plain x.clone() (a fresh
output, page faults included) and copy_ into an already-touched buffer (the pure memory
bandwidth limit). fastgan's CPU outputs use transparent huge pages, which is why it can
beat clone (see csrc/cpu/cpu_memory.h).

    .venv/bin/python -m pytest bench/test_bench_bias_act.py --benchmark-group-by=param:layout,param:mode

Every case is checked against the stock result before it is timed. Several input sets
rotate so that caches are not measured.
"""

import itertools
import math
import os

import pytest
import torch
import torch.nn.functional as F

from fastgan.ops import bias_act

SHAPE = tuple(int(s) for s in os.environ.get("FASTGAN_BENCH_SHAPE", "32,256,64,64").split(","))
N_SETS = 3


def stock(x, b):
    return F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


_compiled = torch.compile(stock)


def fused(x, b):
    return bias_act(x, b, 1, "lrelu")


def clone(x, b):
    return x.clone()


_buffer = {}


def copy_into(x, b):
    out = _buffer.get(x.stride())
    if out is None:
        out = _buffer[x.stride()] = torch.empty_like(x).fill_(0)
    return out.copy_(x)


IMPLS = {"fastgan": fused, "eager": stock, "compile": _compiled, "clone": clone, "copy_": copy_into}
COPIES = ("clone", "copy_")


def make_sets(layout, requires_grad):
    g = torch.Generator().manual_seed(0)
    sets = []
    for _ in range(N_SETS):
        x = torch.randn(SHAPE, generator=g)
        if layout == "channels_last":
            x = x.to(memory_format=torch.channels_last)
        b = torch.randn(SHAPE[1], generator=g)
        sets.append((x.requires_grad_(requires_grad), b.requires_grad_(requires_grad)))
    return sets


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_bias_act_lrelu(benchmark, impl, mode, layout):
    if impl in COPIES and mode == "fwd+bwd":
        pytest.skip("the copy limit is a forward-only reference")
    fn = IMPLS[impl]
    train = mode == "fwd+bwd"
    sets = make_sets(layout, train)
    # correctness before timing
    x, b = sets[0]
    if impl not in COPIES:
        torch.testing.assert_close(fn(x, b), stock(x, b), rtol=1e-5, atol=1e-5)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    grads = [torch.randn(SHAPE).to(memory_format=fmt) for _ in range(N_SETS)]
    cycle = itertools.cycle(range(N_SETS))

    def run():
        i = next(cycle)
        x, b = sets[i]
        if train:
            y = fn(x, b)
            x.grad = b.grad = None
            y.backward(grads[i])
        else:
            with torch.no_grad():
                fn(x, b)

    for _ in range(2):  # warm-up, includes torch.compile's compilation
        run()
    benchmark.pedantic(run, rounds=15, iterations=1, warmup_rounds=1)
