import os

import pytest
import torch

import fastgan._backend as backend

# A missing, broken or stale build must fail the run, not skip the kernel tests (and let
# the model tests compare a reference with stock). Only an explicit FASTGAN_BACKEND=ref
# runs the suite on the references alone.
REF_ONLY = os.environ.get("FASTGAN_BACKEND", "").strip().lower() == "ref"


def pytest_configure(config):
    if REF_ONLY:
        return
    info = backend.backend_info()
    if not info["extension_loaded"]:
        raise pytest.UsageError(
            f"fastgan._C is not usable: {info['extension_error']}\n"
            "(set FASTGAN_BACKEND=ref to run the tests on the pure-PyTorch references only)"
        )
    if info["missing_ops"]:
        raise pytest.UsageError(
            f"fastgan._C lacks ops the Python code uses: {info['missing_ops']}; rebuild it "
            "(make build)"
        )


def pytest_report_header(config):
    info = backend.backend_info()
    return [f"fastgan backend: {info}"]


@pytest.fixture(autouse=True)
def _reset_backend():
    """Every test starts on the default backend and both CPU kernel copies on auto."""
    previous = backend._default_backend
    yield
    backend._default_backend = previous
    ext = backend.extension()
    if ext is not None:
        ext._set_cpu_kernels("auto")


def requires_ext():
    return pytest.mark.skipif(
        backend.extension() is None,
        reason="FASTGAN_BACKEND=ref: the compiled kernels are not tested",
    )


@pytest.fixture(params=["default", "avx2"])
def cpu_kernels(request):
    """Runs a test once with each compiled copy of the CPU kernels (baseline ISA, AVX2)."""
    ext = backend.extension()
    if ext is None:
        pytest.skip("FASTGAN_BACKEND=ref: the compiled kernels are not tested")
    info = ext.build_info()
    if request.param == "avx2" and not (info["cpu_avx2_compiled"] and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")):
        pytest.skip("AVX2 kernels not available on this CPU/build")
    ext._set_cpu_kernels(request.param)
    yield request.param
    ext._set_cpu_kernels("auto")
