import pytest
import torch

import fastgan._backend as backend


def pytest_report_header(config):
    info = backend.backend_info()
    return [f"fastgan backend: {info}"]


@pytest.fixture(autouse=True)
def _reset_backend():
    """Every test starts on the default backend and both CPU kernel copies on auto."""
    previous = backend.get_backend()
    yield
    backend._backend = previous
    ext = backend.extension()
    if ext is not None:
        ext._set_cpu_kernels("auto")


def requires_ext():
    return pytest.mark.skipif(
        backend.extension() is None,
        reason=f"fastgan._C not built: {backend.backend_info()['extension_error']}",
    )


@pytest.fixture(params=["default", "avx2"])
def cpu_kernels(request):
    """Runs a test once with each compiled copy of the CPU kernels (baseline ISA, AVX2)."""
    ext = backend.extension()
    if ext is None:
        pytest.skip("fastgan._C not built")
    info = ext.build_info()
    if request.param == "avx2" and not (info["cpu_avx2_compiled"] and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")):
        pytest.skip("AVX2 kernels not available on this CPU/build")
    ext._set_cpu_kernels(request.param)
    yield request.param
    ext._set_cpu_kernels("auto")
