"""fastgan._C's report of the CPU kernel copies: every op with an AVX2 copy
(csrc/cpu/<op>_avx2.cpp) appears in build_info()["cpu_isa"] and backend_info(), and the
report follows _set_cpu_kernels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import fastgan._backend as backend

# The ops with csrc/cpu/<op>_avx2.cpp; checked against the sources when they are here (an
# installed package is tested from outside the tree).
ISA_OPS = {"bias_act", "batch_norm_act", "fir_bias_act", "upfirdn2d"}
CPU_SRC = Path(__file__).resolve().parents[1] / "csrc" / "cpu"

pytestmark = pytest.mark.skipif(
    backend.extension() is None, reason="FASTGAN_BACKEND=ref: the compiled kernels are not tested"
)


def _avx2_usable(info: dict) -> bool:
    return info["cpu_avx2_compiled"] and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def test_every_op_with_an_avx2_copy_is_reported():
    if CPU_SRC.is_dir():
        assert {p.name[: -len("_avx2.cpp")] for p in CPU_SRC.glob("*_avx2.cpp")} == ISA_OPS
    info = backend.extension().build_info()
    assert set(info["cpu_isa"]) == ISA_OPS
    assert set(info["cpu_isa"].values()) <= {"avx2", "default"}
    assert info["cpu_avx2_active"] == all(v == "avx2" for v in info["cpu_isa"].values())
    assert backend.backend_info()["cpu_isa"] == info["cpu_isa"]


@pytest.mark.parametrize("which", ["default", "avx2", "auto"])
def test_cpu_isa_follows_the_kernel_choice(which):
    ext = backend.extension()
    ext._set_cpu_kernels(which)
    info = ext.build_info()
    expected = "avx2" if which != "default" and _avx2_usable(info) else "default"
    assert info["cpu_isa"] == dict.fromkeys(ISA_OPS, expected)
    assert backend.backend_info()["cpu_isa"] == info["cpu_isa"]
    assert backend.backend_info()["cpu_avx2_active"] == (expected == "avx2")
