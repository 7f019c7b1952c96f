"""Loads the compiled extension ``fastgan._C`` once and decides, per call, whether an op
runs its compiled kernel or its pure-PyTorch reference.

Selection, in order:
  1. ``FASTGAN_BACKEND=ref`` in the environment, ``set_backend("ref")`` or the
     ``use_reference()`` context manager force the references everywhere.
  2. If the extension is missing or failed to import, the references run, with one
     ``FastganFallbackWarning`` per process that names the reason.
  3. A tensor on a device with no compiled kernel (mps, xpu, or cuda when the extension was
     built without CUDA) runs the reference for that call.
``FASTGAN_BACKEND=ext`` makes a missing extension an error instead (used by CI).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, Iterator

import torch

__all__ = [
    "FastganFallbackWarning",
    "backend_info",
    "set_backend",
    "get_backend",
    "use_reference",
    "extension",
]

_VALID_BACKENDS = ("auto", "ref", "ext")


class FastganFallbackWarning(UserWarning):
    """Issued once when fastgan's compiled kernels are unavailable and references run."""


def _load_extension() -> tuple[Any, str | None]:
    try:
        from fastgan import _C  # noqa: F401  (importing registers torch.ops.fastgan.*)
    except Exception as exc:  # ImportError, OSError (missing .so deps), undefined symbols
        return None, f"{type(exc).__name__}: {exc}"
    return _C, None


def _backend_from_env() -> str:
    value = os.environ.get("FASTGAN_BACKEND", "auto").strip().lower() or "auto"
    if value not in _VALID_BACKENDS:
        raise ValueError(
            f"FASTGAN_BACKEND must be one of {', '.join(_VALID_BACKENDS)}; got {value!r}"
        )
    return value


_C, _load_error = _load_extension()
_build_info: dict = dict(_C.build_info()) if _C is not None else {}
_backend = _backend_from_env()
_warned = False

if _backend == "ext" and _C is None:
    raise ImportError(
        f"FASTGAN_BACKEND=ext but fastgan's compiled extension could not be loaded: {_load_error}"
    )


def extension():
    """The loaded ``fastgan._C`` module, or None."""
    return _C


def set_backend(name: str) -> None:
    """Select ``"auto"`` (kernels where available) or ``"ref"`` (pure-PyTorch references)
    for the whole process. ``"ext"`` is like auto but requires the extension."""
    global _backend
    if name not in _VALID_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(_VALID_BACKENDS)}; got {name!r}")
    if name == "ext" and _C is None:
        raise RuntimeError(f"fastgan's compiled extension is not available: {_load_error}")
    _backend = name


def get_backend() -> str:
    return _backend


@contextlib.contextmanager
def use_reference(enabled: bool = True) -> Iterator[None]:
    """Within the block, fastgan ops run their pure-PyTorch references (process-wide)."""
    global _backend
    previous = _backend
    if enabled:
        _backend = "ref"
    try:
        yield
    finally:
        _backend = previous


def _kernel_devices() -> tuple[str, ...]:
    if _C is None:
        return ()
    return ("cpu", "cuda") if _build_info.get("cuda_compiled") else ("cpu",)


_DEVICES = _kernel_devices()


def use_kernel(x: torch.Tensor) -> bool:
    """True when the compiled kernel should run for a tensor on x's device."""
    global _warned
    if _backend == "ref":
        return False
    if _C is None:
        if not _warned:
            _warned = True
            warnings.warn(
                "fastgan: compiled kernels unavailable, using pure-PyTorch references "
                f"(reason: {_load_error})",
                FastganFallbackWarning,
                stacklevel=3,
            )
        return False
    return x.device.type in _DEVICES


def memory_format_of(t: torch.Tensor) -> torch.memory_format:
    """channels_last for a 4-D tensor laid out that way (and not also plain contiguous, as
    size-1 dims allow), else contiguous_format: the layout outputs should follow."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def backend_info() -> dict:
    """What is compiled, what runs, and why not."""
    info = {
        "backend": _backend,
        "extension_loaded": _C is not None,
        "extension_error": _load_error,
        "cpu_kernels": bool(_build_info.get("cpu_kernels", False)),
        "cpu_avx2_compiled": bool(_build_info.get("cpu_avx2_compiled", False)),
        "cpu_avx2_active": bool(_build_info.get("cpu_avx2_active", False)),
        "cuda_kernels": bool(_build_info.get("cuda_compiled", False)),
        "cuda_archs": _build_info.get("cuda_archs") or None,
        "built_with_torch": _build_info.get("torch_version"),
        "built_with_cuda": _build_info.get("cuda_version") or None,
        "torch_version": torch.__version__,
        "torch_cuda_version": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    if _C is not None:
        info["cpu_avx2_active"] = bool(_C.build_info()["cpu_avx2_active"])
    return info
