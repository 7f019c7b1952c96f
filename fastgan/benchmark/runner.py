"""Runs benchmark cases honestly.

For every case x mode x dtype x layout on one device:

1. several random input sets are built (never zeros) and rotate across rounds, so caches
   are not measured;
2. every implementation is first checked against the reference (values, and input
   gradients for fwd+bwd); one that fails is reported as ``failed`` and not timed;
3. warm-up calls (torch.compile's compilation included) are excluded from the timings;
4. CPU rounds are timed with ``time.perf_counter``, CUDA rounds with CUDA events; the
   implementations of one case take turns within every round (interleaved, the first one
   rotating), so a machine whose speed drifts slows them alike; the statistics (median,
   quartiles, spread) are pytest-benchmark's ``Stats``;
5. memory: on CUDA the peak allocated during one call, on CPU the bytes saved for backward
   (unique storages seen by ``saved_tensors_hooks``) in fwd+bwd mode;
6. memory-bound ops get an achieved bandwidth, next to a plain copy of the same bytes
   (``dst.copy_(src)`` into touched memory) measured in the same run.
"""

from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

try:
    from pytest_benchmark.stats import Stats
except ImportError:  # e.g. a bare GPU machine: the same fields, computed with statistics

    class Stats:  # type: ignore[no-redef]
        def __init__(self):
            self.data = []

        def update(self, duration: float) -> None:
            self.data.append(duration)

        @property
        def median(self) -> float:
            return statistics.median(self.data)

        def as_dict(self) -> dict:
            d = sorted(self.data)
            q1, _, q3 = statistics.quantiles(d, n=4, method="inclusive") if len(d) > 1 else (d[0], 0, d[0])
            return {"min": d[0], "max": d[-1], "mean": statistics.fmean(d), "median": self.median,
                    "stddev": statistics.stdev(d) if len(d) > 1 else 0.0, "q1": q1, "q3": q3,
                    "iqr": q3 - q1, "rounds": len(d)}

from .cases import Case, Inputs, NotSupported

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
# max |error| / max |reference| per tensor, against the float64 reference
DEFAULT_TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 4e-3}
IMPL_ORDER = ("fastgan", "raw", "reference", "eager", "compile")


@dataclass
class Settings:
    device: str = "cpu"
    dtypes: Sequence[str] = ("float32", "bfloat16")
    layouts: Optional[Sequence[str]] = None  # None: each case's own
    modes: Optional[Sequence[str]] = None
    impls: Sequence[str] = IMPL_ORDER
    size: str = "full"  # full | quick | tiny
    rounds: int = 15
    warmup: int = 2
    n_sets: int = 3
    seed: int = 0
    # calls per timed round; None: each case's own (Case.repeat)
    repeat: Optional[int] = None


@dataclass
class Result:
    case: str
    impl: str
    mode: str
    dtype: str
    layout: str
    device: str
    status: str  # ok | failed | error | unsupported
    message: str = ""
    stats: Dict[str, float] = field(default_factory=dict)  # seconds
    saved_bytes: Optional[int] = None
    peak_bytes: Optional[int] = None
    bytes_moved: Optional[int] = None
    bandwidth_gbs: Optional[float] = None
    copy_gbs: Optional[float] = None

    @property
    def key(self) -> str:
        return "/".join((self.case, self.impl, self.mode, self.dtype, self.layout, self.device))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["key"] = self.key
        return d


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _prepare(inputs: Inputs, train: bool) -> Inputs:
    out = []
    for t in inputs:
        t = t.detach().clone(memory_format=torch.preserve_format)
        if train and t.is_floating_point():
            t.requires_grad_(True)
        out.append(t)
    return tuple(out)


def _call(fn, inputs: Inputs, grad: Optional[torch.Tensor], step: bool = False):
    if step:  # a whole training iteration: it runs its own backward passes
        return fn(*inputs), ()
    if grad is None:
        # Forward only: the inputs do not require grad, so no graph is built; no no_grad()
        # block per call, whose cost would show in the per-call overhead cases.
        return fn(*inputs), ()
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    out.backward(grad)
    return out, tuple(t.grad for t in inputs if t.requires_grad)


def _check(case: Case, name: str, got, want, dtype: torch.dtype) -> Optional[str]:
    """Compares with the float64 reference, per tensor, relative to the reference's largest
    magnitude: a reduction (a bias gradient) in low precision is judged by its scale, not by
    elements that cancel to near zero."""
    tol = case.tolerance.get(dtype, DEFAULT_TOL[dtype])
    (out, grads), (ref_out, ref_grads) = got, want
    pairs = [("output", out, ref_out)] + [(f"grad of input {i}", g, r) for i, (g, r) in enumerate(zip(grads, ref_grads))]
    if len(grads) != len(ref_grads):
        return f"{name}: {len(grads)} input gradients, the reference has {len(ref_grads)}"
    for what, a, b in pairs:
        if a is None or b is None:
            if a is not b:
                return f"{name} {what}: missing"
            continue
        if a.shape != b.shape:
            return f"{name} {what}: shape {tuple(a.shape)}, the reference's is {tuple(b.shape)}"
        a64, b64 = a.detach().double(), b.detach().double()
        if not torch.equal(a64.isnan(), b64.isnan()):
            return f"{name} {what}: NaN where the reference has none (or the reverse)"
        scale = b64.nan_to_num().abs().max().item() if b64.numel() else 0.0
        err = (a64 - b64).nan_to_num().abs().max().item() if b64.numel() else 0.0
        if err > tol * max(scale, 1e-6):
            return f"{name} {what} differs from the float64 reference: max error {err:.3g} at scale {scale:.3g} (tolerance {tol:g} relative)"
    return None


def _time_rounds(fn, sets: List[Inputs], grads, device: torch.device, rounds: int, warmup: int,
                 step: bool = False, repeat: int = 1) -> Stats:
    """Per-call seconds, one sample per round; a round makes ``repeat`` calls (tiny inputs:
    the per-call overhead is measured over many calls, not one)."""
    return _time_interleaved([fn], sets, grads, device, rounds, warmup, step, repeat)[0]


def _time_interleaved(fns: Sequence[Callable], sets: List[Inputs], grads, device: torch.device, rounds: int,
                      warmup: int, step: bool = False, repeat: int = 1) -> List[Stats]:
    """Per-call seconds of each of ``fns``, one sample per round each. The implementations
    take turns within every round (the first one rotating from round to round), so a machine
    whose speed drifts over minutes -- shared CPUs, clocks, other jobs -- slows them alike and
    their ratios hold; all of them see the same input set in a round."""
    for fn in fns:
        cycle = itertools.cycle(range(len(sets)))
        for _ in range(warmup):
            i = next(cycle)
            for _ in range(repeat):
                _call(fn, sets[i], grads[i], step)
    _sync(device)
    stats = [Stats() for _ in fns]
    cycle = itertools.cycle(range(len(sets)))
    for r in range(rounds):
        i = next(cycle)
        for k in range(len(fns)):
            j = (r + k) % len(fns)
            fn = fns[j]
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(repeat):
                    _call(fn, sets[i], grads[i], step)
                end.record()
                end.synchronize()
                stats[j].update(start.elapsed_time(end) / 1e3 / repeat)
            else:
                t0 = time.perf_counter()
                for _ in range(repeat):
                    _call(fn, sets[i], grads[i], step)
                stats[j].update((time.perf_counter() - t0) / repeat)
    return stats


def saved_storages(fn: Callable, *args) -> tuple[Any, dict]:
    """Runs ``fn(*args)`` and returns ``(its result, {(data_ptr, device): nbytes})`` for the
    distinct storages autograd saved for backward meanwhile (saved_tensors_hooks)."""
    storages = {}

    def pack(t):
        try:
            s = t.untyped_storage()
            storages[(s.data_ptr(), t.device)] = s.nbytes()
        except RuntimeError:  # e.g. tensors without storage
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args)
    return out, storages


def _saved_bytes(fn, inputs: Inputs, grad) -> int:
    _, storages = saved_storages(_call, fn, inputs, grad)
    input_ptrs = {(t.untyped_storage().data_ptr(), t.device) for t in inputs}
    return sum(n for k, n in storages.items() if k not in input_ptrs)


def _peak_bytes(fn, inputs: Inputs, grad, device: torch.device) -> int:
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    _call(fn, inputs, grad)
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def _rss_bytes(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _release_freed_memory() -> None:
    """Hands freed heap pages back to the OS (glibc's malloc_trim), so that the next
    allocations show in the resident set size again."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def step_peak_bytes(fn, inputs: Inputs, device: torch.device) -> Optional[int]:
    """Peak memory of one call of a whole-iteration ``fn`` beyond what was allocated before
    it (models, optimizer state): CUDA, ``max_memory_allocated``; CPU on Linux, the growth
    of the peak resident set size (VmHWM, reset through /proc/self/clear_refs after freed
    heap pages went back to the OS). Both count every transient allocation of the
    iteration -- activations, saved tensors, gradients -- measured the same way for every
    implementation; None where the platform cannot tell."""
    if device.type == "cuda":
        return _peak_bytes(fn, inputs, None, device)
    import gc
    gc.collect()
    _release_freed_memory()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
    except OSError:
        return None
    base = _rss_bytes("VmRSS")
    if base is None:
        return None
    _call(fn, inputs, None, True)
    peak = _rss_bytes("VmHWM")
    return None if peak is None else max(0, peak - base)


def copy_bandwidth(nbytes: int, dtype: torch.dtype, device: torch.device, rounds: int) -> float:
    """GB/s of ``dst.copy_(src)`` moving ``nbytes`` in all (half read, half written)."""
    elem = torch.empty((), dtype=dtype).element_size()
    n = max(1, nbytes // 2 // elem)
    srcs = [torch.randn(n, device=device).to(dtype) for _ in range(2)]
    dst = torch.empty(n, device=device, dtype=dtype).fill_(1)
    stats = _time_rounds(lambda s: dst.copy_(s), [(s,) for s in srcs], [None, None], device, rounds, 2)
    return 2 * n * elem / stats.median / 1e9


def _configure(fn, device, dtype, layout, size) -> None:
    """Stateful implementations (training steps) start afresh for each check."""
    if hasattr(fn, "configure"):
        fn.configure(device=device, dtype=dtype, layout=layout, size=size)


def run_case(case: Case, settings: Settings, progress=None) -> List[Result]:
    device = torch.device(settings.device)
    results: List[Result] = []
    gen = torch.Generator().manual_seed(settings.seed)
    modes = [m for m in case.modes if settings.modes is None or m in settings.modes]
    layouts = [l for l in case.layouts if settings.layouts is None or l in settings.layouts]
    impls = [i for i in IMPL_ORDER if i in case.impls and i in settings.impls]
    dtypes = [d for d in settings.dtypes if case.dtypes is None or d in case.dtypes]
    for dtype_name, layout, mode in itertools.product(dtypes, layouts, modes):
        if "compile" in impls:
            # A fresh start for torch.compile in each combination: dynamo's per-function
            # recompile limit (8) would otherwise silently fall back to eager after a few
            # dtype / layout / grad-mode combinations of the same case.
            torch.compiler.reset()
        dtype = DTYPES[dtype_name]
        train = mode == "fwd+bwd"
        step = mode == "step"
        base_sets = [case.make_inputs(device, dtype, layout, settings.size, gen) for _ in range(settings.n_sets)]
        sets = [_prepare(s, train) for s in base_sets]
        grads = [None] * len(sets)
        ref_name = "reference" if "reference" in case.impls else "eager"
        try:
            if train:
                _configure(case.impls[ref_name], device, dtype, layout, settings.size)
                ref_out = case.impls[ref_name](*_prepare(base_sets[0], False)).detach()
                fmt = torch.channels_last if layout == "channels_last" and ref_out.dim() == 4 else torch.contiguous_format
                grads = [torch.randn(ref_out.shape, generator=gen).to(device=device, dtype=ref_out.dtype).to(memory_format=fmt)
                         for _ in sets]
            if case.check_against == "float64":
                check_inputs = tuple(t.double() if t.is_floating_point() else t for t in base_sets[0])
                check_grad = grads[0].double() if grads[0] is not None else None
            else:
                check_inputs, check_grad = base_sets[0], grads[0]
            _configure(case.impls[ref_name], device, dtype, layout, settings.size)
            torch.manual_seed(settings.seed)
            want = _call(case.impls[ref_name], _prepare(check_inputs, train), check_grad, step)
            want = (want[0].detach(), tuple(g.detach() for g in want[1]))
        except Exception as e:  # the reference itself cannot run this combination
            for impl in impls:
                results.append(Result(case.name, impl, mode, dtype_name, layout, device.type, "error", f"reference failed: {type(e).__name__}: {e}"))
            continue
        copy_gbs = None
        done: Dict[str, Result] = {}
        timed = []  # (impl, result, fn) of the implementations that passed
        for impl in impls:
            fn = case.impls[impl]
            res = Result(case.name, impl, mode, dtype_name, layout, device.type, "ok")
            if progress:
                progress(res.key)
            try:
                _configure(fn, device, dtype, layout, settings.size)
                torch.manual_seed(settings.seed)
                got = _call(fn, _prepare(base_sets[0], train), grads[0], step)
                problem = _check(case, impl, got, want, dtype)
            except NotSupported as e:
                res.status, res.message = "unsupported", str(e)
                done[impl] = res
                continue
            except Exception as e:
                problem = f"{type(e).__name__}: {e}"
            if problem:
                res.status, res.message = "failed", problem
                done[impl] = res
                continue
            if case.memory_bound and case.min_bytes is not None and not train:
                res.bytes_moved = int(case.min_bytes(sets[0], got[0]))
            del got  # not kept alive while the others are timed
            timed.append((impl, res, fn))
        repeat = case.repeat if settings.repeat is None else settings.repeat
        all_stats = _time_interleaved([t[2] for t in timed], sets, grads, device, settings.rounds, settings.warmup,
                                      step, repeat) if timed else []
        for (impl, res, fn), stats in zip(timed, all_stats):
            res.stats = {k: float(v) for k, v in stats.as_dict().items() if isinstance(v, (int, float))}
            if step and case.step_memory:
                res.peak_bytes = step_peak_bytes(fn, sets[0], device)
            if not step:  # a step's own memory is not separated from its models' state
                if device.type == "cuda":
                    res.peak_bytes = _peak_bytes(fn, sets[0], grads[0], device)
                elif train:
                    res.saved_bytes = _saved_bytes(fn, sets[0], grads[0])
            if res.bytes_moved is not None:
                res.bandwidth_gbs = res.bytes_moved / stats.median / 1e9
                if copy_gbs is None:
                    copy_gbs = copy_bandwidth(res.bytes_moved, dtype, device, settings.rounds)
                res.copy_gbs = copy_gbs
            done[impl] = res
        results.extend(done[impl] for impl in impls if impl in done)
    return results


def run(cases: Sequence[Case], settings: Settings, progress=None) -> List[Result]:
    out: List[Result] = []
    for case in cases:
        out.extend(run_case(case, settings, progress))
    return out
