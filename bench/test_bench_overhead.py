"""Per-call cost of every op on tiny tensors, (2, 8, 4, 4) and (2, 8, 8, 8) float32 on one
CPU thread: fastgan's public function against the stock composition it replaces and
against the registered op called directly (raw), forward and forward+backward.

    .venv/bin/python -m pytest bench/test_bench_overhead.py --benchmark-group-by=param:case,param:mode \\
        --benchmark-columns=median,iqr,min,rounds --benchmark-sort=name

The cases are the `overhead` group of `fastgan bench` (fastgan/benchmark/cases.py): one
definition for both. Each implementation is first checked against the stock result; each
round makes 200 calls and pytest-benchmark reports the time per call.
"""

import pytest
import torch

from fastgan.benchmark.cases import all_cases

CASES = [c for c in all_cases() if c.group == "overhead"]
CALLS = 200


def _call(fn, inputs, grad):
    if grad is None:  # forward: the inputs do not require grad
        return fn(*inputs)
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    out.backward(grad)
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("impl", ["fastgan", "raw", "eager"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_overhead(benchmark, case, mode, impl):
    gen = torch.Generator().manual_seed(0)
    train = mode == "fwd+bwd"
    inputs = case.make_inputs(torch.device("cpu"), torch.float32, "contiguous", "tiny", gen)
    inputs = tuple(t.detach().clone().requires_grad_(train) for t in inputs)
    grad = None
    if train:
        with torch.no_grad():
            grad = torch.randn(case.impls["eager"](*inputs).shape, generator=gen)
    want = _call(case.impls["eager"], inputs, grad).detach()
    want_grads = [t.grad.clone() for t in inputs] if train else []
    fn = case.impls[impl]
    got = _call(fn, inputs, grad).detach()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    for t, g in zip(inputs, want_grads):
        torch.testing.assert_close(t.grad, g, rtol=1e-4, atol=1e-5)
    benchmark.extra_info["us_per_call"] = None
    benchmark.pedantic(_call, args=(fn, inputs, grad), rounds=15, iterations=CALLS, warmup_rounds=1)
    benchmark.extra_info["us_per_call"] = benchmark.stats.stats.median * 1e6
