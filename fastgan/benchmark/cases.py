"""What `fastgan bench` measures: a registry of cases.

A case builds random inputs for one (device, dtype, layout, size) and offers up to four
implementations of the same computation:

- ``fastgan``: fastgan's op or layer (compiled kernels),
- ``reference``: fastgan's pure-PyTorch reference of it (``use_reference()``),
- ``eager``: the stock PyTorch composition a user would write,
- ``compile``: ``torch.compile`` of that stock composition.

Every implementation maps one input set (a tuple of tensors) to an output tensor. For the
forward+backward mode the runner back-propagates a fixed random gradient to every input
that requires grad. Cases register themselves with :func:`register`; op cases whose op is
not part of this build are skipped at listing time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

Inputs = Tuple[torch.Tensor, ...]
Impl = Callable[..., torch.Tensor]


@dataclass
class Case:
    name: str
    group: str  # "op", "layer" or "train"
    description: str
    # (device, dtype, layout, size, generator) -> one input set; called several times.
    # size: "full" (the documented benchmark size), "quick" (smoke run), "tiny" (tests)
    make_inputs: Callable[[torch.device, torch.dtype, str, str, torch.Generator], Inputs]
    impls: Dict[str, Impl]
    modes: Sequence[str] = ("fwd", "fwd+bwd")
    layouts: Sequence[str] = ("contiguous", "channels_last")
    memory_bound: bool = False
    # bytes one forward call must move at least (inputs read + output written): for the
    # bandwidth column; None = not a memory-bound op
    min_bytes: Optional[Callable[[Inputs, torch.Tensor], int]] = None
    available: Callable[[], bool] = lambda: True
    # max |error| / max |reference| allowed per dtype, overriding the runner's defaults
    tolerance: Dict[torch.dtype, float] = field(default_factory=dict)


_REGISTRY: Dict[str, Case] = {}


def register(case: Case) -> Case:
    if case.name in _REGISTRY:
        raise ValueError(f"benchmark case {case.name!r} registered twice")
    _REGISTRY[case.name] = case
    return case


def all_cases() -> List[Case]:
    return [c for c in _REGISTRY.values() if c.available()]


def get_cases(names: Optional[Sequence[str]] = None) -> List[Case]:
    cases = all_cases()
    if not names:
        return cases
    known = {c.name: c for c in cases}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--ops: unknown case(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]


def _to_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels_last" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def _compiled(fn: Impl) -> Impl:
    """torch.compile of a stock composition, compiled lazily on first call."""
    state = {}

    def run(*args):
        if "fn" not in state:
            state["fn"] = torch.compile(fn)
        return state["fn"](*args)

    return run


def _with_reference(fn: Impl) -> Impl:
    def run(*args):
        from fastgan.ops import use_reference

        with use_reference():
            return fn(*args)

    return run


def _elementwise_bytes(inputs: Inputs, out: torch.Tensor) -> int:
    return inputs[0].numel() * inputs[0].element_size() + out.numel() * out.element_size()


# --- bias_act -------------------------------------------------------------------------


def _bias_act_inputs(device, dtype, layout, size, gen):
    shape = {"full": (32, 256, 64, 64), "quick": (8, 64, 32, 32), "tiny": (2, 5, 3, 7)}[size]
    x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(shape[1], generator=gen).to(device=device, dtype=dtype)
    return (_to_layout(x, layout), b)


def _bias_act_fastgan(x, b):
    from fastgan.ops import bias_act

    return bias_act(x, b, 1, "lrelu")


def _bias_act_stock(x, b):
    return F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


register(
    Case(
        name="bias_act",
        group="op",
        description="bias + leaky ReLU(0.2) * sqrt(2), NCHW, bias along C",
        make_inputs=_bias_act_inputs,
        impls={
            "fastgan": _bias_act_fastgan,
            "reference": _with_reference(_bias_act_fastgan),
            "eager": _bias_act_stock,
            "compile": _compiled(_bias_act_stock),
        },
        memory_bound=True,
        min_bytes=_elementwise_bytes,
    )
)


def _fused_lrelu_fastgan(x, b):
    from fastgan.ops import fused_leaky_relu

    return fused_leaky_relu(x, b)


register(
    Case(
        name="fused_leaky_relu",
        group="op",
        description="rosinality's fused_leaky_relu(input, bias), defaults",
        make_inputs=_bias_act_inputs,
        impls={
            "fastgan": _fused_lrelu_fastgan,
            "reference": _with_reference(_fused_lrelu_fastgan),
            "eager": _bias_act_stock,
            "compile": _compiled(_bias_act_stock),
        },
        memory_bound=True,
        min_bytes=_elementwise_bytes,
    )
)
