"""What `fastgan bench` measures: a registry of cases.

A case builds random inputs for one (device, dtype, layout, size) and offers up to four
implementations of the same computation:

- ``fastgan``: fastgan's op or layer (compiled kernels),
- ``reference``: fastgan's pure-PyTorch reference of it (``use_reference()``),
- ``eager``: the stock PyTorch composition a user would write,
- ``compile``: ``torch.compile`` of that stock composition;
- ``raw`` (overhead cases): the registered op called directly, ``torch.ops.fastgan.*``,
  with only the stock glue a caller needs around it: what the public function costs on
  top of the op itself.

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

from .._backend import memory_format_of, use_layers

Inputs = Tuple[torch.Tensor, ...]
Impl = Callable[..., torch.Tensor]


class NotSupported(Exception):
    """An implementation that cannot run this case at all (e.g. torch.compile and double
    backward): reported as not supported, with the reason, not as a failure."""


@dataclass
class Case:
    name: str
    group: str  # "op", "layer", "train" or "overhead"
    description: str
    # (device, dtype, layout, size, generator) -> one input set; called several times.
    # size: "full" (the documented benchmark size), "quick" (smoke run), "tiny" (tests)
    make_inputs: Callable[[torch.device, torch.dtype, str, str, torch.Generator], Inputs]
    impls: Dict[str, Impl]
    # fwd, fwd+bwd, or "step": the implementation runs a whole training iteration itself
    # (forward, backward, optimizer steps) and returns its losses
    modes: Sequence[str] = ("fwd", "fwd+bwd")
    layouts: Sequence[str] = ("contiguous", "channels_last")
    memory_bound: bool = False
    # bytes one forward call must move at least (inputs read + output written): for the
    # bandwidth column; None = not a memory-bound op
    min_bytes: Optional[Callable[[Inputs, torch.Tensor], int]] = None
    available: Callable[[], bool] = lambda: True
    # dtypes this case supports (None: any the runner asks for)
    dtypes: Optional[Sequence[str]] = None
    # "float64": check against the reference run on float64 copies of the inputs;
    # "same": against the reference at the case's own dtype (stateful training steps)
    check_against: str = "float64"
    # max |error| / max |reference| allowed per dtype, overriding the runner's defaults
    tolerance: Dict[torch.dtype, float] = field(default_factory=dict)
    # calls per timed round (the time reported is per call): tiny inputs in the overhead
    # group take microseconds, which one call cannot resolve
    repeat: int = 1
    # "step" cases: also measure one iteration's peak memory (peak_bytes; see
    # fastgan.benchmark.runner.step_peak_bytes)
    step_memory: bool = False


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

    if hasattr(fn, "configure"):
        run.configure = fn.configure
    return run


def _impls(fastgan_fn: Impl, stock_fn: Impl) -> Dict[str, Impl]:
    """The four implementations of an op case: fastgan's kernel, its pure-PyTorch reference,
    the stock composition, and torch.compile of that composition."""
    return {
        "fastgan": fastgan_fn,
        "reference": _with_reference(fastgan_fn),
        "eager": stock_fn,
        "compile": _compiled(stock_fn),
    }


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
        impls=_impls(_bias_act_fastgan, _bias_act_stock),
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
        impls=_impls(_fused_lrelu_fastgan, _bias_act_stock),
        memory_bound=True,
        min_bytes=_elementwise_bytes,
    )
)


# --- batch_norm_act -------------------------------------------------------------------


def _bn_act_inputs(device, dtype, layout, size, gen):
    # quick: the DCGAN generator's 14 x 14 batch norm (fmnist-dcgan, batch 128)
    shape = {"full": (32, 256, 32, 32), "quick": (128, 32, 14, 14), "tiny": (2, 5, 3, 7)}[size]
    x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    w = (torch.rand(shape[1], generator=gen) + 0.5).to(device=device, dtype=dtype)
    b = torch.randn(shape[1], generator=gen).to(device=device, dtype=dtype)
    return (_to_layout(x, layout), w, b)


def _bn_act_fastgan(x, w, b):
    from fastgan.ops import batch_norm_act

    return batch_norm_act(x, None, None, w, b, True, 0.1, 1e-5, "relu")


def _bn_act_raw(x, w, b):
    return torch.ops.fastgan.batch_norm_act(x, w, b, None, None, True, 1e-5, "relu", 0.2, 1.0, -1.0)[0]


def _bn_act_stock(x, w, b):
    return F.relu(F.batch_norm(x, None, None, w, b, True, 0.1, 1e-5))


register(
    Case(
        name="batch_norm_act",
        group="op",
        description="batch norm (batch statistics) + ReLU, as in DCGAN's generator",
        make_inputs=_bn_act_inputs,
        impls=_impls(_bn_act_fastgan, _bn_act_stock),
        memory_bound=True,
        min_bytes=_elementwise_bytes,
        # bfloat16 is not timed: stock eager's own fwd+bwd fails the float64 check there
        # (batch-norm input gradient ~4 off at scale ~6), so it is no baseline; the
        # bfloat16 kernels are checked in tests/test_batch_norm_act.py
        dtypes=("float32",),
    )
)


# --- upfirdn2d ------------------------------------------------------------------------

_FIR = (1.0, 3.0, 3.0, 1.0)


def _image_inputs(full, quick, tiny):
    def make(device, dtype, layout, size, gen):
        shape = {"full": full, "quick": quick, "tiny": tiny}[size]
        x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
        return (_to_layout(x, layout),)

    return make


def _stock_fir(x, taps, up, down, pad):
    """What a user writes without fastgan: zero insertion by strided assignment, pad,
    depthwise conv2d with the flipped (true convolution) filter."""
    n, c, h, w = x.shape
    if up > 1:
        fmt = memory_format_of(x)
        z = torch.zeros((n, c, h * up, w * up), device=x.device, dtype=x.dtype).contiguous(memory_format=fmt)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, pad)
    f = torch.tensor(taps, device=x.device, dtype=x.dtype)
    f = torch.outer(f, f)
    f = (f / f.sum() * (up * up)).flip([0, 1])
    f = f.view(1, 1, *f.shape).repeat(c, 1, 1, 1)
    return F.conv2d(x, f, stride=down, groups=c)


def _upfirdn_fastgan(up, down, pad):
    def run(x):
        from fastgan.ops import setup_filter, upfirdn2d

        return upfirdn2d(x, setup_filter(list(_FIR), device=x.device), up=up, down=down, padding=pad, gain=up * up)

    return run


def _upfirdn_stock(up, down, pad):
    def run(x):
        return _stock_fir(x, _FIR, up, down, pad)

    return run


for _name, _up, _down, _pad, _desc in (
    ("upfirdn2d_up2", 2, 1, [2, 1, 2, 1], "upsample2d: up=2, separable [1,3,3,1], NCHW"),
    ("upfirdn2d_down2", 1, 2, [1, 1, 1, 1], "downsample2d: down=2, separable [1,3,3,1], NCHW"),
):
    register(
        Case(
            name=_name,
            group="op",
            description=_desc,
            make_inputs=_image_inputs(
                (8, 128, 64, 64) if _up > 1 else (8, 128, 128, 128), (4, 32, 32, 32), (2, 3, 6, 7 if _up > 1 else 8)
            ),
            impls=_impls(_upfirdn_fastgan(_up, _down, _pad), _upfirdn_stock(_up, _down, _pad)),
            memory_bound=True,
            min_bytes=_elementwise_bytes,
        )
    )


# --- gradient penalty -----------------------------------------------------------------


def _grads_inputs(device, dtype, layout, size, gen):
    shape = {"full": (64, 3, 64, 64), "quick": (16, 3, 64, 64), "tiny": (3, 2, 5, 4)}[size]
    g = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    return (_to_layout(g, layout),)


def _penalty_fastgan(g):
    from fastgan.ops import grad_penalty

    return grad_penalty(g, center=1.0)


def _penalty_stock(g):
    return (g.flatten(1).float().norm(dim=1) - 1.0).square().mean().to(g.dtype)


register(
    Case(
        name="grad_penalty",
        group="op",
        description="WGAN-GP term mean((||g_i|| - 1)^2) over per-sample gradients",
        make_inputs=_grads_inputs,
        impls=_impls(_penalty_fastgan, _penalty_stock),
        memory_bound=True,
        min_bytes=lambda inputs, out: inputs[0].numel() * inputs[0].element_size(),
    )
)


# --- training iterations --------------------------------------------------------------

_TRAIN_SIZES = {
    # preset, overrides per size
    "dcgan": ("fmnist-dcgan", {"full": dict(batch_size=128), "quick": dict(batch_size=32), "tiny": dict(batch_size=4, base_ch=8, max_ch=16)}),
    "stylegan2": ("stylegan2-256", {
        "full": dict(resolution=64, max_ch=128, batch_size=8),
        "quick": dict(resolution=32, max_ch=64, batch_size=4),
        "tiny": dict(resolution=16, max_ch=16, batch_size=2),
    }),
}


def _train_config(model: str, size: str):
    from fastgan.train.config import make_config

    preset, sizes = _TRAIN_SIZES[model]
    return make_config(preset, overrides=sizes[size])


def _train_inputs(model: str):
    def make(device, dtype, layout, size, gen):
        cfg = _train_config(model, size)
        bs, r = cfg.batch_size, cfg.resolution
        real = torch.rand((bs, cfg.img_channels, r, r), generator=gen) * 2 - 1
        z1, z2 = torch.randn((bs, cfg.z_dim), generator=gen), torch.randn((bs, cfg.z_dim), generator=gen)
        return (_to_layout(real.to(device=device, dtype=dtype), layout), z1.to(device, dtype), z2.to(device, dtype))

    return make


class _TrainStep:
    """One iteration: D step on real + fake (non-saturating loss), R1 on the reals for the
    StyleGAN2-style model (every iteration: the upper bound of lazy regularization), then a
    G step; Adam. The runner calls ``configure`` before each correctness check, which builds
    fresh models with seed 0: every implementation starts from the same weights. The
    compiled variant compiles G and D; R1's double backward runs D uncompiled, since
    torch.compile does not support double backward."""

    def __init__(self, model: str, layers: str, compiled: bool = False):
        self.model, self.layers, self.compiled = model, layers, compiled
        self.state = None

    def configure(self, device, dtype, layout, size):
        from fastgan.train.build import build_models

        cfg = _train_config(self.model, size)
        torch.manual_seed(0)
        G, D = build_models(cfg, 0)
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        G, D = G.to(device, dtype, memory_format=fmt), D.to(device, dtype, memory_format=fmt)
        opt_g = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.0, 0.99))
        opt_d = torch.optim.Adam(D.parameters(), 1e-4, betas=(0.0, 0.99))
        g_call, d_call = (torch.compile(G), torch.compile(D)) if self.compiled else (G, D)
        self.state = (G, D, g_call, d_call, opt_g, opt_d)

    def __call__(self, real, z1, z2):
        with use_layers(self.layers):
            return self._step(real, z1, z2)

    def _step(self, real, z1, z2):
        from fastgan import losses

        if self.state is None:
            raise RuntimeError("benchmark step used before configure()")
        G, D, g_call, d_call, opt_g, opt_d = self.state
        with torch.no_grad():
            fake = g_call(z1)
        loss_d = losses.d_loss(d_call(real), d_call(fake))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        if self.model == "stylegan2":
            losses.r1_penalty(D, real, 1.0).backward()
        opt_d.step()
        D.requires_grad_(False)
        loss_g = losses.g_loss(d_call(g_call(z2)))
        D.requires_grad_(True)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        return torch.stack([loss_d.detach(), loss_g.detach()])


def _has_training() -> bool:
    try:
        import fastgan.models  # noqa: F401
        import fastgan.train.config  # noqa: F401
    except ImportError:
        return False
    return True


def _register_step_case(name: str, description: str, make_inputs, step_cls, *args) -> None:
    """A whole-iteration case: fastgan layers, their pure-PyTorch references, stock layers,
    and torch.compile of the stock model, each a fresh `step_cls(*args, layers)`."""
    register(
        Case(
            name=name,
            group="train",
            description=description,
            make_inputs=make_inputs,
            impls={
                "fastgan": step_cls(*args, "fastgan"),
                "reference": _with_reference(step_cls(*args, "fastgan")),
                "eager": step_cls(*args, "stock"),
                "compile": step_cls(*args, "stock", compiled=True),
            },
            modes=("step",),
            dtypes=("float32",),
            check_against="same",
            tolerance={torch.float32: 2e-3},
            available=_has_training,
        )
    )


for _model, _desc in (
    ("dcgan", "DCGAN (fmnist-dcgan preset, 28 px, batch 128): D step + G step, Adam"),
    ("stylegan2", "StyleGAN2-style G/D, 64 px, max 128 channels, batch 8: D step + R1 + G step"),
):
    _register_step_case(f"train_{_model}", _desc, _train_inputs(_model), _TrainStep, _model)


# --- a large-resolution StyleGAN2 iteration: time and peak memory ------------------------


class _HiresStep:
    """One StyleGAN2 training iteration as ``fastgan train`` runs it -- the trainer's own D
    step and G step (``fastgan.train.Trainer``), at step 0, where both lazy regularizers are
    due: the D step with R1 (sharing D's forward on the reals), the G step with style mixing
    and then the path-length penalty; Adam steps and the G_ema update included. The preset
    of the resolution (``stylegan2-256``, ``stylegan2-1024``) at batch 2, float32; ``lean``
    turns on the trainer's activation checkpointing (``checkpoint_blocks``)."""

    SIZES = {"full": ("stylegan2-1024", {}), "quick": ("stylegan2-256", {}),
             "tiny": ("stylegan2-256", dict(resolution=16, max_ch=16, z_dim=16))}
    BATCH = 2

    def __init__(self, lean: bool, layers: str, compiled: bool = False):
        self.lean, self.layers, self.compiled = lean, layers, compiled
        self.trainer = None

    @classmethod
    def config(cls, size: str, **kw):
        import tempfile

        from fastgan.train.config import make_config

        preset, over = cls.SIZES[size]
        values = dict(batch_size=cls.BATCH, sample_n=1, progress=False, tensorboard=False,
                      out=tempfile.gettempdir() + "/fastgan-bench-hires")  # the trainer writes nothing here
        values.update(over, **kw)
        return make_config(preset, overrides=values)

    def configure(self, device, dtype, layout, size):
        from fastgan.data.stream import in_memory_source
        from fastgan.train import Trainer

        if self.compiled:
            raise NotSupported("torch.compile: R1's and the path length's double backward")
        cfg = self.config(size, layers=self.layers, device=str(device), checkpoint_blocks=self.lean,
                          channels_last=layout == "channels_last")
        r = cfg.resolution
        images = torch.zeros((self.BATCH, cfg.img_channels, r, r), dtype=torch.uint8)  # the inputs come as arguments
        self.trainer = Trainer(cfg, source=in_memory_source(images, None, 0, "benchmark"))

    def __call__(self, real):
        t = self.trainer
        if t is None:
            raise RuntimeError("benchmark step used before configure()")
        with use_layers(self.layers):
            t.step = 0  # every call: R1 and the path length both due
            out = t._d_step(real, None)
            out.update(t._g_step(real.shape[0]))
        if not {"r1", "pl", "loss_d", "loss_g"} <= out.keys():
            raise RuntimeError(f"hires step: expected D and G losses with R1 and path length, got {sorted(out)}")
        return torch.stack([out[k].detach().float().reshape(()) for k in ("loss_d", "r1", "loss_g", "pl")])


def _hires_inputs(device, dtype, layout, size, gen):
    cfg = _HiresStep.config(size)
    r = cfg.resolution
    real = torch.rand((_HiresStep.BATCH, cfg.img_channels, r, r), generator=gen) * 2 - 1
    return (_to_layout(real.to(device=device, dtype=dtype), layout),)


for _lean, _suffix, _what in ((False, "", ""), (True, "_lean", ", activation checkpointing (checkpoint_blocks)")):
    register(
        Case(
            name=f"train_stylegan2_hires{_suffix}",
            group="train",
            description=("StyleGAN2 iteration, stylegan2-1024 preset (--quick: stylegan2-256), batch 2: D step + R1, "
                         f"G step + style mixing + path length, Adam, EMA{_what}; time and peak memory"),
            make_inputs=_hires_inputs,
            impls={"fastgan": _HiresStep(_lean, "fastgan"), "eager": _HiresStep(_lean, "stock")},
            modes=("step",),
            layouts=("contiguous",),
            dtypes=("float32",),
            check_against="same",
            tolerance={torch.float32: 2e-3},
            available=_has_training,
            step_memory=True,
        )
    )


# --- fused upsampling block -----------------------------------------------------------


def _up_block_inputs(device, dtype, layout, size, gen):
    n, c, h = {"full": (8, 128, 32), "quick": (4, 32, 16), "tiny": (2, 3, 5)}[size]
    x = torch.randn((n, c, h, h), generator=gen)
    w = torch.randn((c, c, 3, 3), generator=gen) / math.sqrt(c * 9)
    b = torch.randn(c, generator=gen)
    return (_to_layout(x.to(device, dtype), layout), w.to(device, dtype), b.to(device, dtype))


def _up_block_fastgan(x, w, b):
    from fastgan.ops import upsample_conv2d

    return upsample_conv2d(x, w, b)


def _up_block_stock(x, w, b):
    """conv_transpose2d (stride 2), pad, depthwise [1,3,3,1] blur (gain 4), bias, leaky ReLU, gain."""
    t = F.conv_transpose2d(x, w.transpose(0, 1).flip([2, 3]), stride=2)
    t = F.pad(t, [1, 1, 1, 1])
    f = torch.tensor(_FIR, device=x.device, dtype=x.dtype)
    f2 = torch.outer(f, f) / f.sum() ** 2 * 4
    c = t.shape[1]
    t = F.conv2d(t, f2.flip([0, 1])[None, None].expand(c, 1, 4, 4), groups=c)
    return F.leaky_relu(t + b.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


register(
    Case(
        name="upsample_conv2d",
        group="layer",
        description="fused upsampling block: 3x3 transposed conv x2, [1,3,3,1] blur, bias, lrelu",
        make_inputs=_up_block_inputs,
        impls=_impls(_up_block_fastgan, _up_block_stock),
        # a layer of chained bf16 roundings (conv output, filter, grads): every
        # implementation, stock eager included, lands up to ~10% off the float64 result
        tolerance={torch.bfloat16: 0.2, torch.float16: 0.03},
    )
)


# --- penalty steps --------------------------------------------------------------------


class _PenaltyStep:
    """R1 (StyleGAN2-style residual D, 64 px, batch 16) or WGAN-GP (DCGAN-style critic,
    64 px, batch 64): the penalty with create_graph, then backward to D's parameters.
    fastgan: fused layers + fastgan.losses (grad_penalty op, no_weight_gradients);
    stock: the same architecture and weights in stock layers + the textbook penalty."""

    SIZES = {
        "r1": ("stylegan2-256", {"full": dict(resolution=64, max_ch=128, batch_size=16), "quick": dict(resolution=32, max_ch=64, batch_size=8),
                                 "tiny": dict(resolution=16, max_ch=16, batch_size=2)}),
        "wgangp": ("fmnist-wgan-gp", {"full": dict(resolution=64, img_channels=3, batch_size=64), "quick": dict(resolution=32, img_channels=3, batch_size=16),
                                      "tiny": dict(resolution=32, img_channels=3, base_ch=8, max_ch=16, batch_size=2)}),
    }

    def __init__(self, kind: str, layers: str, compiled: bool = False):
        self.kind, self.layers, self.compiled = kind, layers, compiled
        self.D = None

    @classmethod
    def config(cls, kind, size):
        from fastgan.train.config import make_config

        preset, sizes = cls.SIZES[kind]
        return make_config(preset, overrides=sizes[size])

    def configure(self, device, dtype, layout, size):
        from fastgan.train.build import build_models

        torch.manual_seed(0)
        _, D = build_models(self.config(self.kind, size), 0)
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        self.D = D.to(device, dtype, memory_format=fmt)
        self.call = torch.compile(self.D) if self.compiled else self.D

    def __call__(self, real, fake):

        if self.D is None:
            raise RuntimeError("benchmark step used before configure()")
        with use_layers(self.layers):
            if self.compiled:
                return self._compiled_call(real, fake)
            return self._step(real, fake)

    def _compiled_call(self, real, fake):
        # Donated buffers (on by default) forbid create_graph=True outright; without them
        # AOTAutograd still cannot differentiate its compiled backward a second time.
        import torch._functorch.config as functorch_config

        try:
            with functorch_config.patch(donated_buffer=False):
                return self._step(real, fake)
        except RuntimeError as e:
            if "double backward" in str(e):
                raise NotSupported(f"torch.compile: {str(e).splitlines()[0]}") from None
            raise

    def _step(self, real, fake):
        from fastgan import losses

        self.D.zero_grad(set_to_none=True)
        naive = self.layers == "stock"
        if self.kind == "r1":
            fn = losses.r1_penalty_naive if naive else losses.r1_penalty
            loss = fn(self.call, real, 1.0)
        else:
            fn = losses.wgan_gp_penalty_naive if naive else losses.wgan_gp_penalty
            eps = torch.rand((real.shape[0], 1, 1, 1), device=real.device, dtype=real.dtype)
            loss = fn(self.call, real, fake, eps=eps)
        loss.backward()
        return loss.detach().reshape(1)


def _penalty_inputs(kind):
    def make(device, dtype, layout, size, gen):
        cfg = _PenaltyStep.config(kind, size)
        shape = (cfg.batch_size, cfg.img_channels, cfg.resolution, cfg.resolution)
        real, fake = (torch.rand(shape, generator=gen) * 2 - 1 for _ in range(2))
        return tuple(_to_layout(t.to(device, dtype), layout) for t in (real, fake))

    return make


for _kind, _desc in (
    ("r1", "R1 step: StyleGAN2-style D 64 px (max 128 ch), batch 16, penalty + backward to D"),
    ("wgangp", "WGAN-GP critic step: DCGAN-style critic 64 px, batch 64, penalty + backward to D"),
):
    _register_step_case(f"{_kind}_step", _desc, _penalty_inputs(_kind), _PenaltyStep, _kind)


# --- per-call overhead ----------------------------------------------------------------
#
# Every op on tiny tensors, (2, 8, 4, 4) and (2, 8, 8, 8) whatever --size asks: there the
# time is the cost of a call (Python wrapper, dispatch, autograd bookkeeping), not of the
# arithmetic. fastgan's public function against the stock composition it replaces and
# against the registered op called directly (raw).

_TINY_HW = (4, 8)
_SQRT2 = math.sqrt(2.0)


def _tiny_inputs(hw, extra=None):
    def make(device, dtype, layout, size, gen):
        x = torch.randn((2, 8, hw, hw), generator=gen).to(device=device, dtype=dtype)
        out = (_to_layout(x, layout),)
        if extra is not None:
            out += tuple(t.to(device=device, dtype=dtype) for t in extra(gen))
        return out

    return make


class _FilterCache:
    """A filter made once per device, as a module buffer would be (not per call)."""

    def __init__(self, taps, separable=True):
        self.taps, self.separable, self.by_device = taps, separable, {}

    def __call__(self, device):
        f = self.by_device.get(device)
        if f is None:
            from fastgan.ops import setup_filter

            f = self.by_device[device] = setup_filter(list(self.taps), device=device, separable=self.separable)
        return f


_FIR_SEP = _FilterCache(_FIR)


def _ovh_bias_act():
    def fastgan_fn(x, b):
        from fastgan.ops import bias_act

        return bias_act(x, b, 1, "lrelu")

    def raw(x, b):
        return torch.ops.fastgan.bias_act(x, b, 1, "lrelu", 0.2, _SQRT2, -1.0)

    return fastgan_fn, raw, _bias_act_stock, lambda gen: (torch.randn(8, generator=gen),)


def _ovh_batch_norm_act():
    def extra(gen):
        return torch.rand(8, generator=gen) + 0.5, torch.randn(8, generator=gen)

    return _bn_act_fastgan, _bn_act_raw, _bn_act_stock, extra


def _ovh_upfirdn(up, down, pad):
    def fastgan_fn(x):
        from fastgan.ops import upfirdn2d

        return upfirdn2d(x, _FIR_SEP(x.device), up=up, down=down, padding=pad, gain=up * up)

    def raw(x):
        return torch.ops.fastgan.upfirdn2d(x, _FIR_SEP(x.device), up, up, down, down, *pad, False, float(up * up))

    return fastgan_fn, raw, _upfirdn_stock(up, down, pad), None


def _ovh_grad_penalty():
    def raw(g):
        return (torch.ops.fastgan.grad_sqnorm(g).sqrt() - 1.0).square().mean().to(g.dtype)

    return _penalty_fastgan, raw, _penalty_stock, None


def _up_block_raw(x, w, b):
    """The registered fused epilogue with the filter taps precomputed: [1,3,3,1] / 8 * 2
    per axis (gain 4 over both), correlation order, pad [1, 1, 1, 1] after the transposed
    convolution."""
    t = F.conv_transpose2d(x, w.transpose(0, 1).flip([2, 3]), stride=2)
    taps = [v / 8 * 2 for v in _FIR] * 2
    y, _ = torch.ops.fastgan.fir_bias_act(t, b, taps, 4, 4, True, [1, 1, 1, 1], "lrelu", 0.2, _SQRT2, -1.0)
    return y


def _tiny_conv_extra(gen):
    c = 8
    return (torch.randn((c, c, 3, 3), generator=gen) / math.sqrt(c * 9), torch.randn(c, generator=gen))


def _ovh_upsample_conv2d():
    return _up_block_fastgan, _up_block_raw, _up_block_stock, _tiny_conv_extra


def _down_block_fastgan(x, w, b):
    from fastgan.ops import downsample_conv2d

    return downsample_conv2d(x, w, b)


def _down_block_raw(x, w, b):
    taps = [v / 8 for v in _FIR] * 2
    t, _ = torch.ops.fastgan.fir_bias_act(x, None, taps, 4, 4, True, [2, 2, 2, 2], "linear", 0.0, 1.0, -1.0)
    t = F.conv2d(t, w, stride=2)
    return torch.ops.fastgan.bias_act(t, b, 1, "lrelu", 0.2, _SQRT2, -1.0)


def _down_block_stock(x, w, b):
    """[1,3,3,1] blur (pad 2), 3x3 stride-2 conv, bias, leaky ReLU, gain."""
    c = x.shape[1]
    f = torch.tensor(_FIR, device=x.device, dtype=x.dtype)
    f2 = torch.outer(f, f) / f.sum() ** 2
    t = F.conv2d(F.pad(x, [2, 2, 2, 2]), f2[None, None].expand(c, 1, 4, 4), groups=c)
    t = F.conv2d(t, w, stride=2)
    return F.leaky_relu(t + b.view(1, -1, 1, 1), 0.2) * _SQRT2


def _ovh_downsample_conv2d():
    return _down_block_fastgan, _down_block_raw, _down_block_stock, _tiny_conv_extra


def _register_overhead() -> None:
    ops = (
        ("bias_act", _ovh_bias_act(), "bias_act"),
        ("batch_norm_act", _ovh_batch_norm_act(), "batch_norm_act"),
        ("upfirdn2d_up2", _ovh_upfirdn(2, 1, [2, 1, 2, 1]), "upfirdn2d"),
        ("upfirdn2d_down2", _ovh_upfirdn(1, 2, [1, 1, 1, 1]), "upfirdn2d"),
        ("grad_penalty", _ovh_grad_penalty(), "grad_penalty"),
        ("upsample_conv2d", _ovh_upsample_conv2d(), "upsample_conv2d"),
        ("downsample_conv2d", _ovh_downsample_conv2d(), "downsample_conv2d"),
    )
    for name, (fastgan_fn, raw, stock, extra), public in ops:
        for hw in _TINY_HW:
            register(
                Case(
                    name=f"tiny_{name}_{hw}x{hw}",
                    group="overhead",
                    description=f"per-call cost of {public} on a (2, 8, {hw}, {hw}) tensor",
                    make_inputs=_tiny_inputs(hw, extra),
                    # checked against the stock composition run in float64
                    impls={"fastgan": fastgan_fn, "raw": raw, "eager": stock},
                    repeat=200,
                    # the conv blocks chain bf16 roundings (see upsample_conv2d above):
                    # stock eager itself lands ~10% off the float64 result there
                    tolerance={torch.bfloat16: 0.2 if "conv" in name else 0.05, torch.float16: 0.03 if "conv" in name else 0.01},
                )
            )


_register_overhead()
