"""The device of the CUDA test files (tests/test_*_cuda.py), and helpers they share.

Those tests run on "cuda" when a GPU and fastgan's CUDA kernels are present, and skip
otherwise. With FASTGAN_TEST_CUDA_ON_CPU=1 the same test bodies run on "cpu" instead (the
CPU kernels against the same references), so that the tests' own logic can be checked on a
machine without a GPU before the one GPU run; tests of CUDA-only features (streams, fp16
autocast, the CUDA kernels' own limits) skip then (`cuda_only`).
"""

from __future__ import annotations

import contextlib
import os

import pytest
import torch

import fastgan._backend as backend

ON_CPU = os.environ.get("FASTGAN_TEST_CUDA_ON_CPU", "").strip() == "1"
DEVICE = "cpu" if ON_CPU else "cuda"


def _skip_reason() -> str | None:
    """The two documented reasons to skip: no GPU, or FASTGAN_BACKEND=ref. A missing
    extension, or one without CUDA kernels on a GPU machine, fails (conftest, and
    test_cuda_kernels_are_built in tests/test_bias_act_cuda.py)."""
    if os.environ.get("FASTGAN_BACKEND", "").strip().lower() == "ref":
        return "FASTGAN_BACKEND=ref: the compiled kernels are not tested"
    if ON_CPU:
        return None
    if not torch.cuda.is_available():
        return ("needs a CUDA device (torch.cuda.is_available() is False); "
                "FASTGAN_TEST_CUDA_ON_CPU=1 runs these tests on the CPU kernels")
    return None


SKIP_REASON = _skip_reason()
# pytestmark for every CUDA test module.
MARKS = [pytest.mark.cuda, pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")]


def cuda_only(what: str):
    """Skips a test of a CUDA-only feature under FASTGAN_TEST_CUDA_ON_CPU=1."""
    return pytest.mark.skipif(ON_CPU, reason=f"{what}: CUDA only (FASTGAN_TEST_CUDA_ON_CPU=1)")


@contextlib.contextmanager
def tf32_off():
    """Full float32 convolutions and matmuls (restoring the previous settings): cuDNN's
    TF32, on by default for convolutions on Ampere and newer, rounds the operands to 10
    mantissa bits (errors ~1e-3), far above float32 tolerances."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = conv
        torch.backends.cuda.matmul.allow_tf32 = matmul


def side_stream_matches(fn, *inputs):
    """Runs fn(*inputs) on the default stream, then on a fresh side stream whose copies of
    the inputs are written only after a sleep queued on that stream; asserts the results
    are bitwise equal. A kernel launched on another stream than the current one would
    read the copies before they are written (NaN there) and fail the comparison."""
    expected = fn(*inputs)
    staged = [torch.full_like(t, float("nan")) for t in inputs]
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)  # ~25 ms of GPU clock on the side stream
        for s, t in zip(staged, inputs):
            s.copy_(t)
        got = fn(*staged)
    torch.cuda.synchronize()
    exp = expected if isinstance(expected, (tuple, list)) else (expected,)
    res = got if isinstance(got, (tuple, list)) else (got,)
    assert len(exp) == len(res)
    for e, r in zip(exp, res):
        assert e.shape == r.shape and e.stride() == r.stride() and e.dtype == r.dtype
        assert torch.equal(e, r)
