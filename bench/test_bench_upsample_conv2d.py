"""The fused upsampling block, 3x3 weights, (8, 128, 32, 32) -> (8, 128, 64, 64) float32, CPU:
fastgan.ops.upsample_conv2d vs the stock eager composition (conv_transpose2d, pad,
depthwise conv2d blur, bias, leaky_relu, gain) vs torch.compile of that composition.

    .venv/bin/python -m pytest bench/test_bench_upsample_conv2d.py --benchmark-group-by=param:mode

FASTGAN_BENCH_UP_SHAPE=N,C,H,W overrides the input shape. Every case is checked against the
stock result before it is timed; several input sets rotate.

On CPU (float32) fastgan runs the transposed convolution and its backward in channels_last
(oneDNN's stride-2 transposed convolution is ~3x faster so); its fused epilogue writes the
result back in x's (contiguous) layout and its fused backward reads the contiguous grad of
y. The inputs here are contiguous, as in the stock case, so every implementation gets and
returns the same layout.

test_upsample_conv2d_saved_memory (not a timing: skipped under --benchmark-only) measures
the bytes saved for backward (torch.autograd.graph.saved_tensors_hooks, distinct storages)
at the same shape, fastgan vs the stock eager composition, prints both and asserts the
issue's bound (at most half).
"""

import itertools
import math
import os

import pytest
import torch
import torch.nn.functional as F

from fastgan.benchmark.runner import saved_storages
from fastgan.ops import upsample_conv2d

SHAPE = tuple(int(s) for s in os.environ.get("FASTGAN_BENCH_UP_SHAPE", "8,128,32,32").split(","))
N_SETS = 3
_F = torch.tensor([1.0, 3.0, 3.0, 1.0])
F2D = torch.outer(_F, _F) / _F.sum() ** 2 * 4  # unit sum, gain up**2


def stock(x, w, b):
    t = F.conv_transpose2d(x, w.transpose(0, 1).flip([2, 3]), stride=2)
    t = F.pad(t, [1, 1, 1, 1])
    c = t.shape[1]
    t = F.conv2d(t, F2D.flip([0, 1])[None, None].expand(c, 1, 4, 4), groups=c)
    return F.leaky_relu(t + b.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


_compiled = torch.compile(stock)


def fused(x, w, b):
    return upsample_conv2d(x, w, b)


IMPLS = {"fastgan": fused, "eager": stock, "compile": _compiled}


def saved_bytes(fn, *args):
    """Bytes of the distinct storages autograd saves for backward while fn(*args) runs."""
    return sum(saved_storages(fn, *args)[1].values())


def make_sets(requires_grad):
    g = torch.Generator().manual_seed(0)
    n, c, h, w = SHAPE
    sets = []
    for _ in range(N_SETS):
        x = torch.randn(SHAPE, generator=g)
        wt = torch.randn(c, c, 3, 3, generator=g) / math.sqrt(c * 9)
        b = torch.randn(c, generator=g)
        sets.append(tuple(t.requires_grad_(requires_grad) for t in (x, wt, b)))
    return sets


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_upsample_conv2d_block(benchmark, impl, mode):
    fn = IMPLS[impl]
    train = mode == "fwd+bwd"
    sets = make_sets(train)
    for x, w, b in sets[:1]:
        torch.testing.assert_close(fn(x, w, b), stock(x, w, b), rtol=1e-4, atol=1e-4)
    gy = torch.randn(SHAPE[0], SHAPE[1], SHAPE[2] * 2, SHAPE[3] * 2)
    it = itertools.cycle(sets)

    def run():
        x, w, b = next(it)
        if train:
            y = fn(x, w, b)
            torch.autograd.backward(y, gy)
            x.grad = w.grad = b.grad = None
        else:
            with torch.no_grad():
                fn(x, w, b)

    for _ in range(2):  # warm-up (compile, allocator)
        run()
    benchmark.pedantic(run, rounds=int(os.environ.get("FASTGAN_BENCH_ROUNDS", "10")), iterations=1,
                       warmup_rounds=1)


def test_upsample_conv2d_saved_memory():
    x, w, b = make_sets(True)[0]
    fast, eager = saved_bytes(fused, x, w, b), saved_bytes(stock, x, w, b)
    print(f"\nsaved for backward: fastgan {fast / 2**20:.1f} MiB, eager {eager / 2**20:.1f} MiB "
          f"({fast / eager:.2f}x)")
    assert fast <= eager / 2, (fast, eager)
