"""fastgan._backend: the thread-local reference switch, honest fallbacks (one warning per
cause, an error under FASTGAN_BACKEND=ext) and the reasons given for an unusable build."""

from __future__ import annotations

import threading
import warnings

import pytest
import torch

import fastgan._backend as backend
from fastgan.ops import bias_act, use_reference


def test_use_reference_is_local_to_its_thread():
    """Two threads at once: one inside use_reference() runs the references, the other
    keeps the kernels the whole time."""
    x = torch.randn(2, 3, 4, 4)
    inside, done = threading.Event(), threading.Event()
    seen = {}

    def referencing():
        with use_reference():
            seen["ref_thread"] = (backend.get_backend(), backend.use_kernel(x))
            inside.set()
            done.wait(10)
        seen["ref_thread_after"] = backend.use_kernel(x)

    def other():
        inside.wait(10)
        seen["other_thread"] = (backend.get_backend(), backend.use_kernel(x))
        seen["other_result"] = bias_act(x, None, act="lrelu")
        done.set()

    threads = [threading.Thread(target=referencing), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen["ref_thread"] == ("ref", False)
    assert seen["other_thread"] == (backend.get_backend(), True)
    assert seen["ref_thread_after"] is True
    torch.testing.assert_close(seen["other_result"], bias_act(x, None, act="lrelu"))


def test_compiled_function_follows_use_reference():
    """torch.compile guards on the switch: entering use_reference() after compiling
    recompiles to the reference instead of baking the kernel in."""
    calls = []

    def fn(x):
        calls.append(backend.get_backend())
        return bias_act(x, None, act="relu")

    compiled = torch.compile(fn, backend="eager", fullgraph=True)
    x = torch.randn(2, 3, 4, 4)
    compiled(x)
    with use_reference():
        torch.testing.assert_close(compiled(x), torch.relu(x) * 2**0.5)
    assert "ref" in calls


def test_device_without_kernels_warns_once_or_raises_under_ext(monkeypatch):
    monkeypatch.setattr(backend, "_warned", set())
    monkeypatch.setattr(backend, "_default_backend", "auto")  # CI runs under ext
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert backend._no_kernel("xpu") is False
        assert backend._no_kernel("xpu") is False
    msgs = [str(w.message) for w in caught if issubclass(w.category, backend.FastganFallbackWarning)]
    assert len(msgs) == 1 and "xpu" in msgs[0]
    monkeypatch.setattr(backend, "_default_backend", "ext")
    with pytest.raises(RuntimeError, match="FASTGAN_BACKEND=ext.*xpu"):
        backend._no_kernel("xpu")


def test_cuda_without_cuda_kernels_names_the_build_reason(monkeypatch):
    monkeypatch.setattr(backend, "_warned", set())
    monkeypatch.setattr(backend, "_default_backend", "auto")
    monkeypatch.setattr(backend, "_build_info", dict(backend._build_info, cuda_compiled=False,
                                                     cuda_reason="no nvcc under CUDA_HOME=/opt/x"))
    with pytest.warns(backend.FastganFallbackWarning, match="no CUDA kernels.*no nvcc under CUDA_HOME=/opt/x"):
        backend._no_kernel("cuda")


def test_missing_ops_are_named(monkeypatch):
    class OldBuild:  # a build from before op_status existed
        pass

    assert set(backend._missing_ops(OldBuild())) == set(backend.EXPECTED_OPS)

    class PartialBuild:
        @staticmethod
        def op_status(names):
            return {n: {"schema": "grad_sqnorm" not in n, "cpu": True, "cuda": False,
                        "autograd": "upfirdn2d" not in n} for n in names}

    missing = backend._missing_ops(PartialBuild())
    assert missing == {"grad_sqnorm": "not registered", "upfirdn2d": "no autograd kernel"}
    monkeypatch.setattr(backend, "_MISSING_OPS", missing)
    monkeypatch.setattr(backend, "_warned", set())
    with pytest.warns(backend.FastganFallbackWarning, match="lacks fastgan::upfirdn2d.*rebuild"):
        assert backend.op_available("upfirdn2d") is False
    assert backend.op_available("bias_act") is True


def test_this_build_is_complete():
    assert backend.backend_info()["missing_ops"] == {}


def test_load_failures_name_the_cause(monkeypatch, tmp_path):
    # No compiled module at all: not Python's "circular import" message.
    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda name: None)
    msg = backend._load_failure(ImportError("cannot import name '_C' from partially initialized module"))
    assert "not built" in msg and "circular" not in msg
    # A module built against another torch: the version is read from the binary's stamp.
    so = tmp_path / "_C.so"
    so.write_bytes(b"\x00junk fastgan-build-torch=2.11.0+cu130; more\x00")

    class Spec:
        origin = str(so)

    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda name: Spec())
    msg = backend._load_failure(ImportError(f"{so}: undefined symbol: _ZN3c104impl8GPUTrace"))
    assert f"built against torch 2.11.0+cu130, running torch {torch.__version__}" in msg
    assert "rebuild" in msg


def test_layer_kits_in_two_threads_at_once():
    """One model, two threads at once: one runs it in the stock kit (no compiled kernel
    called), the other in the fastgan kit (kernels), meanwhile; same results; the switch
    is gone after the block, nested use_reference() inside stock and back."""
    from fastgan.nn import Conv2dAct, stock_layers, use_layers

    torch.manual_seed(0)
    m = Conv2dAct(3, 4, 3, padding=1, act="lrelu", clamp=0.5)
    x = torch.randn(2, 3, 6, 6)
    barrier = threading.Barrier(2, timeout=10)
    seen = {}

    def run(kit):
        with use_layers(kit):
            barrier.wait()  # both threads inside their blocks at once
            seen[kit] = (stock_layers(), backend.use_kernel(x), m(x))
            barrier.wait()
        seen[kit + "_after"] = stock_layers()

    threads = [threading.Thread(target=run, args=(k,)) for k in ("stock", "fastgan")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen["stock"][:2] == (True, False)
    assert seen["fastgan"][:2] == (False, backend.extension() is not None and backend.get_backend() != "ref")
    assert seen["stock_after"] is False and seen["fastgan_after"] is False
    torch.testing.assert_close(seen["stock"][2], seen["fastgan"][2])
    with use_layers("stock"):
        assert not backend.use_kernel(x)  # the stock baseline runs no compiled kernel
        with use_reference():  # two switches: each nests inside the other
            assert backend.get_backend() == "ref" and stock_layers()
        with use_layers("fastgan"):
            assert not stock_layers()
        assert stock_layers()
    with use_reference():
        with use_layers("stock"), use_layers("fastgan"):
            assert backend.get_backend() == "ref" and not backend.use_kernel(x)
        assert backend.get_backend() == "ref"
    with pytest.raises(ValueError, match="layers"):
        with use_layers("cudnn"):
            pass
