"""Loads the compiled extension ``fastgan._C`` once and decides, per call, whether an op
runs its compiled kernel or its pure-PyTorch reference.

Selection, in order:
  1. ``FASTGAN_BACKEND=ref`` in the environment or ``set_backend("ref")`` (process-wide),
     or the ``use_reference()`` context manager (this thread only), force
     the references.
  2. If the extension is missing or failed to import, the references run, with one
     ``FastganFallbackWarning`` per process that names the reason.
  3. A tensor on a device with no compiled kernel (mps, xpu, or cuda when the extension was
     built without CUDA) runs the reference, with one ``FastganFallbackWarning`` per device.
  4. An op that this build lacks (a build older than the Python code) runs its reference,
     with one warning naming the op.
``FASTGAN_BACKEND=ext`` makes each of 2-4 an error instead (used by CI).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import threading
import warnings
from typing import Any, Iterator

import torch

__all__ = [
    "FastganFallbackWarning",
    "backend_info",
    "set_backend",
    "get_backend",
    "use_reference",
    "use_layers",
    "stock_layers",
    "LAYER_KITS",
    "extension",
]

_VALID_BACKENDS = ("auto", "ref", "ext")

# Every op the Python code calls, and the dispatch keys it needs a kernel for.
EXPECTED_OPS = (
    "bias_act",
    "bias_act_grad",
    "grad_sqnorm",
    "grad_penalty",
    "upfirdn2d",
    "fir_bias_act",
    "fir_bias_act_grad",
    "batch_norm_act",
    "batch_norm_act_backward",
)

# The layer kits of fastgan.nn: "fastgan" (fused kernels) or "stock" (the textbook
# composition of stock PyTorch ops, the A/B baseline), chosen with use_layers().
LAYER_KITS = ("fastgan", "stock")

_REBUILD = "rebuild it: `make build`, or `pip install --no-build-isolation .` again"


class FastganFallbackWarning(UserWarning):
    """Issued once per cause when fastgan's compiled kernels cannot run and references do."""


def _built_torch(path: str) -> str | None:
    """The torch version a (possibly unloadable) fastgan._C was compiled against, from the
    stamp csrc/python_module.cpp leaves in the binary."""
    try:
        with open(path, "rb") as fh:
            m = re.search(rb"fastgan-build-torch=([^;\x00]{1,64});", fh.read())
    except OSError:
        return None
    return m.group(1).decode(errors="replace") if m else None


def _load_extension() -> tuple[Any, str | None]:
    try:
        from fastgan import _C  # noqa: F401  (importing registers torch.ops.fastgan.*)
    except Exception as exc:  # ImportError, OSError (missing .so deps), undefined symbols
        return None, _load_failure(exc)
    return _C, None


def _load_failure(exc: Exception) -> str:
    """Why fastgan._C could not be loaded, in the user's terms."""
    msg = f"{type(exc).__name__}: {exc}"
    try:
        spec = importlib.util.find_spec("fastgan._C")
    except (ImportError, ValueError):  # e.g. sys.modules["fastgan._C"] = None
        return msg
    if spec is None or spec.origin is None:
        # Python's own message here blames "a circular import".
        return f"fastgan._C is not built: {_REBUILD.replace('rebuild it', 'build it')}"
    if "undefined symbol" in msg:
        built = _built_torch(spec.origin)
        was = f"built against torch {built}" if built else "built against another torch"
        return (f"fastgan._C ({spec.origin}) was {was}, running torch {torch.__version__} "
                f"({msg}); {_REBUILD}")
    return f"fastgan._C ({spec.origin}) could not be loaded: {msg}"


def _backend_from_env() -> str:
    value = os.environ.get("FASTGAN_BACKEND", "auto").strip().lower() or "auto"
    if value not in _VALID_BACKENDS:
        raise ValueError(
            f"FASTGAN_BACKEND must be one of {', '.join(_VALID_BACKENDS)}; got {value!r}"
        )
    return value


def _missing_ops(ext) -> dict[str, str]:
    """op -> what this build lacks for it (schema, CPU kernel, C++ autograd)."""
    if ext is None:
        return {}
    if not hasattr(ext, "op_status"):
        return {op: "a build older than this Python code" for op in EXPECTED_OPS}
    missing = {}
    status = ext.op_status([f"fastgan::{op}" for op in EXPECTED_OPS])
    for op in EXPECTED_OPS:
        s = status[f"fastgan::{op}"]
        if not s["schema"]:
            missing[op] = "not registered"
        elif not (s["cpu"] or s.get("composite")):
            missing[op] = "no CPU kernel"
        elif not s["autograd"]:
            missing[op] = "no autograd kernel"
    return missing


_C, _load_error = _load_extension()
_build_info: dict = dict(_C.build_info()) if _C is not None else {}
_MISSING_OPS = _missing_ops(_C)
_default_backend = _backend_from_env()
# use_reference() sets `mode` ("ref") and use_layers() sets `kit` ("stock") here, for the
# current thread only: two switches, so that either nests inside the other. threading.local rather than
# a ContextVar: torch.compile (dynamo) traces and guards on it in every supported torch,
# while ContextVar.get is untraceable before torch 2.14 (a graph break, an error under
# fullgraph=True). The importing thread gets an explicit None, so that its reads hit an
# attribute (a getattr default that misses raises and drops an AttributeError per call);
# other threads read the getattr default. (A class-attribute default on a threading.local
# subclass is not guarded by dynamo in torch 2.11: a compiled function would then keep the
# backend it was compiled with.)
_local = threading.local()
_local.mode = None
_local.kit = None
_warned: set = set()

if _default_backend == "ext":
    if _C is None:
        raise ImportError(
            f"FASTGAN_BACKEND=ext but fastgan's compiled extension could not be loaded: "
            f"{_load_error}"
        )
    if _MISSING_OPS:
        raise ImportError(
            "FASTGAN_BACKEND=ext but fastgan._C lacks "
            + ", ".join(f"fastgan::{op} ({why})" for op, why in _MISSING_OPS.items())
            + f"; {_REBUILD}"
        )


def extension():
    """The loaded ``fastgan._C`` module, or None."""
    return _C


def set_backend(name: str) -> None:
    """Select ``"auto"`` (kernels where available) or ``"ref"`` (pure-PyTorch references)
    for the whole process. ``"ext"`` is like auto but makes every fallback an error."""
    global _default_backend
    if name not in _VALID_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(_VALID_BACKENDS)}; got {name!r}")
    if name == "ext" and _C is None:
        raise RuntimeError(f"fastgan's compiled extension is not available: {_load_error}")
    _default_backend = name


def get_backend() -> str:
    """The backend in effect here: ``use_reference()``'s if inside one, else the process's.
    (Under ``use_layers("stock")`` ops run their references too, whatever this says.)"""
    return getattr(_local, "mode", None) or _default_backend


@contextlib.contextmanager
def use_reference(enabled: bool = True) -> Iterator[None]:
    """Within the block, fastgan ops run their pure-PyTorch references. The switch is
    local to the current thread: other threads keep their backend meanwhile."""
    previous = getattr(_local, "mode", None)
    if enabled:
        _local.mode = "ref"
    try:
        yield
    finally:
        _local.mode = previous


@contextlib.contextmanager
def use_layers(kit: str) -> Iterator[None]:
    """Within the block, fastgan.nn's modules (and so every model) run as ``kit``:
    ``"fastgan"``, the fused kernels, or ``"stock"``, the textbook composition of stock
    PyTorch ops that they replace (conv with its bias, ``F.leaky_relu``, pad + depthwise
    conv2d for FIR filters ...), with ops running their pure-PyTorch references. The
    parameters are the same either way, so one model runs in both (A/B benchmarks,
    ``fastgan train --layers stock``). Every fastgan op called inside runs its reference,
    the losses' penalties included: the stock baseline uses no compiled kernel.

    Local to the current thread, like use_reference(): model code that runs on another
    thread (``nn.DataParallel``'s replicas, a backward pass that re-runs a forward on an
    autograd worker thread, as activation checkpointing does on CUDA) runs the fastgan kit
    there. use_reference() inside the block keeps the stock layers (their ops run
    references either way)."""
    if kit not in LAYER_KITS:
        raise ValueError(f"layers: expected one of {', '.join(LAYER_KITS)}, got {kit!r}")
    previous = getattr(_local, "kit", None)
    _local.kit = "stock" if kit == "stock" else None
    try:
        yield
    finally:
        _local.kit = previous


@contextlib.contextmanager
def no_activation_checkpointing() -> Iterator[None]:
    """Inside (this thread): models run their blocks without activation checkpointing. The
    penalties on input gradients (R1, WGAN-GP, path length) enter it: their double backward
    keeps every recomputed activation alive until the end, so checkpointing would only add
    the recomputation (measured: no lower peak, README "Large resolutions")."""
    previous = getattr(_local, "no_ckpt", False)
    _local.no_ckpt = True
    try:
        yield
    finally:
        _local.no_ckpt = previous


def activation_checkpointing_allowed() -> bool:
    """False inside :func:`no_activation_checkpointing` on this thread."""
    return not getattr(_local, "no_ckpt", False)


def stock_layers() -> bool:
    """Whether fastgan.nn's modules run their stock composition here (see use_layers)."""
    return getattr(_local, "kit", None) == "stock"


def _kernel_devices() -> frozenset:
    if _C is None:
        return frozenset()
    # meta: the ops' fake kernels (shape propagation, torch.compile).
    devices = {"cpu", "meta"}
    if _build_info.get("cuda_compiled"):
        devices.add("cuda")
    return frozenset(devices)


_DEVICES = _kernel_devices()
_CPU_KERNELS = "cpu" in _DEVICES
_CUDA_KERNELS = "cuda" in _DEVICES


def _warn_once(key, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, FastganFallbackWarning, stacklevel=4)


def _no_kernel(device: str) -> bool:
    """A tensor on a device without compiled kernels: warn once (or raise under ext)."""
    if _C is None:
        _warn_once(
            "load",
            f"fastgan: compiled kernels unavailable, using pure-PyTorch references "
            f"(reason: {_load_error})",
        )
        return False
    if device == "cuda":
        why = _build_info.get("cuda_reason") or "built without CUDA kernels"
        reason = f"this build of fastgan._C has no CUDA kernels ({why}); {_REBUILD} with nvcc"
    else:
        reason = f"fastgan has no compiled kernels for {device} tensors"
    if get_backend() == "ext":
        raise RuntimeError(f"FASTGAN_BACKEND=ext: {reason}")
    _warn_once(("device", device), f"fastgan: {reason}; running the pure-PyTorch references (slow)")
    return False


def use_kernel(x: torch.Tensor) -> bool:
    """True when the compiled kernel should run for a tensor on x's device."""
    if (getattr(_local, "mode", None) or _default_backend) == "ref" or getattr(_local, "kit", None):
        return False
    if not isinstance(x, torch.Tensor):
        return False  # the reference path reports the bad argument
    # is_cpu / is_cuda first: reading x.device.type costs several microseconds in a
    # training loop (measured), a large share of a small op's whole call
    if x.is_cpu:
        if _CPU_KERNELS:
            return True
    elif x.is_cuda and _CUDA_KERNELS:
        return True
    device = x.device.type
    if device in _DEVICES:
        return True
    return _no_kernel(device)


def op_available(op: str) -> bool:
    """Whether this build has ``fastgan::<op>`` with its kernels and C++ autograd. A
    missing op warns once (the caller runs its reference); under ext it never gets here,
    the import fails."""
    if _C is None:
        return False
    why = _MISSING_OPS.get(op)
    if why is None:
        return True
    _warn_once(("op", op), f"fastgan: this build of fastgan._C lacks fastgan::{op} ({why}); "
               f"running its pure-PyTorch reference; {_REBUILD}")
    return False


def memory_format_of(t: torch.Tensor) -> torch.memory_format:
    """channels_last for a 4-D tensor laid out that way (and not also plain contiguous, as
    size-1 dims allow), else contiguous_format: the layout outputs should follow."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def backend_info() -> dict:
    """What is compiled, what runs, and why not."""
    info = {
        "backend": get_backend(),
        "extension_loaded": _C is not None,
        "extension_error": _load_error,
        "missing_ops": dict(_MISSING_OPS),
        "cpu_kernels": bool(_build_info.get("cpu_kernels", False)),
        "cpu_avx2_compiled": bool(_build_info.get("cpu_avx2_compiled", False)),
        "cpu_avx2_active": bool(_build_info.get("cpu_avx2_active", False)),
        "cuda_kernels": bool(_build_info.get("cuda_compiled", False)),
        "cuda_archs": _build_info.get("cuda_archs") or None,
        "cuda_reason": _build_info.get("cuda_reason") or None,
        "built_with_torch": _build_info.get("torch_version"),
        "built_with_cuda": _build_info.get("cuda_version") or None,
        "torch_version": torch.__version__,
        "torch_cuda_version": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    info["cpu_isa"] = dict(_build_info.get("cpu_isa", {}))  # op -> "avx2" | "default"
    if _C is not None:
        live = _C.build_info()  # _set_cpu_kernels changes the choice after import
        info["cpu_avx2_active"] = bool(live["cpu_avx2_active"])
        info["cpu_isa"] = dict(live.get("cpu_isa", {}))
    return info


def summary() -> str:
    """One line: what runs where (printed by `make build`)."""
    if _C is None:
        return f"fastgan: no compiled kernels ({_load_error})"
    cuda = (
        f"CUDA kernels for {_build_info.get('cuda_archs')}"
        if _build_info.get("cuda_compiled")
        else f"no CUDA kernels ({_build_info.get('cuda_reason') or 'built without CUDA'})"
    )
    isa = "AVX2" if _build_info.get("cpu_avx2_active") else "baseline"
    per_op = _build_info.get("cpu_isa") or {}
    if len(set(per_op.values())) > 1:  # a mixed choice names each op's copy
        isa = ", ".join(f"{op} {'AVX2' if v == 'avx2' else 'baseline'}" for op, v in per_op.items())
    line = f"fastgan._C: CPU kernels ({isa}), {cuda}; built with torch {_build_info.get('torch_version')}"
    if _MISSING_OPS:
        line += "; MISSING: " + ", ".join(_MISSING_OPS)
    return line
