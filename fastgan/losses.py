"""GAN losses and gradient penalties.

Adversarial losses take discriminator logits and return a scalar (the batch mean).
Penalties take the discriminator as a callable; extra inputs of a conditional D (labels)
are passed through ``d_args`` / ``d_kwargs``. Every penalty returns a scalar that is
already multiplied by its weight (``gamma / 2`` for R1/R2, ``weight`` for WGAN-GP) and is
differentiable w.r.t. D's parameters (the gradients are taken with ``create_graph=True``).

Speed: the first backward (gradient w.r.t. the images) runs inside
:func:`fastgan.ops.no_weight_gradients`, so layers on :mod:`fastgan.ops.conv2d_gradfix`
skip their weight gradients there, and the
per-sample norm is :func:`fastgan.ops.grad_penalty` (one pass). :func:`d_loss_with_r1`
shares one forward on the real images between D's loss and R1. The ``*_naive`` functions
are the textbook definitions, kept as test references.

AMP: under bf16 autocast nothing special is needed. With float16 and a
``torch.amp.GradScaler``, pass ``scaler=`` to the penalty: the first backward then runs on
the *scaled* output (so small float16 gradients do not underflow) and the gradients are
multiplied by ``1 / scale`` in float32 before the norm, which is PyTorch's recipe for
gradient penalties under AMP. The returned penalty is unscaled; add it to the loss and call
``scaler.scale(loss).backward()`` as usual. An overflow in the first backward gives an inf
penalty, so the scaler skips that step and lowers its scale.

Lazy regularization (StyleGAN2): :class:`LazyRegularizer` and :func:`lazy_adam_params`.
StyleGAN2's path-length regularization of G: :class:`PathLengthPenalty`.
Original WGAN weight clipping: :func:`clip_weights_hook`.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional, Union

import torch
import torch.nn.functional as F

from ._backend import no_activation_checkpointing
from .ops.conv2d_gradfix import no_weight_gradients
from .ops.grad_penalty import grad_penalty

LOSS_KINDS = ("minimax", "nonsaturating", "hinge", "wasserstein", "lsgan")


def _acc(t: torch.Tensor) -> torch.Tensor:
    """Half types accumulate in float32; float32/float64 stay as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _check_kind(kind: str) -> None:
    if kind not in LOSS_KINDS:
        raise ValueError(f"kind: unknown GAN loss {kind!r}; expected one of {', '.join(LOSS_KINDS)}")


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """The discriminator's loss on a batch of real and a batch of fake logits.

    minimax and nonsaturating share D's loss, ``softplus(-D(x)) + softplus(D(G(z)))``;
    hinge: ``relu(1 - D(x)) + relu(1 + D(G(z)))``; wasserstein: ``D(G(z)) - D(x)``;
    lsgan: ``(D(x) - 1)^2 / 2 + D(G(z))^2 / 2``. Always ``d_loss_real(real_logits) +
    d_loss_fake(fake_logits)``: the halves can be backpropagated one after the other.
    """
    return d_loss_real(real_logits, kind) + d_loss_fake(fake_logits, kind)


def d_loss_real(real_logits: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """The reals' half of :func:`d_loss` (a batch mean)."""
    _check_kind(kind)
    real = _acc(real_logits)
    if kind in ("minimax", "nonsaturating"):
        return F.softplus(-real).mean()
    if kind == "hinge":
        return F.relu(1 - real).mean()
    if kind == "wasserstein":
        return -real.mean()
    return 0.5 * (real - 1).square().mean()


def d_loss_fake(fake_logits: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """The fakes' half of :func:`d_loss` (a batch mean)."""
    _check_kind(kind)
    fake = _acc(fake_logits)
    if kind in ("minimax", "nonsaturating"):
        return F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1 + fake).mean()
    if kind == "wasserstein":
        return fake.mean()
    return 0.5 * fake.square().mean()


def g_loss(fake_logits: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """The generator's loss on fake logits.

    minimax: ``-softplus(D(G(z)))`` (minimizes log(1 - D)); nonsaturating:
    ``softplus(-D(G(z)))``; hinge and wasserstein: ``-D(G(z))``; lsgan: ``(D(G(z)) - 1)^2 / 2``.
    """
    _check_kind(kind)
    fake = _acc(fake_logits)
    if kind == "minimax":
        return -F.softplus(fake).mean()
    if kind == "nonsaturating":
        return F.softplus(-fake).mean()
    if kind in ("hinge", "wasserstein"):
        return -fake.mean()
    return 0.5 * (fake - 1).square().mean()


def _check_d(D) -> None:
    if not callable(D):
        raise TypeError(f"D must be callable (the discriminator), got {type(D).__name__}")


def _input_grads_and_out(D: Callable, x: torch.Tensor, d_args, d_kwargs, scaler=None):
    """One forward of D on a leaf copy of x and the gradient of sum(D(x)) w.r.t. it, with
    create_graph=True and the weight gradients skipped. Returns (grad in float32/64, out)."""
    _check_d(D)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a tensor, got {type(x).__name__}")
    x = x.detach().requires_grad_(True)
    with no_activation_checkpointing():  # the double backward keeps every activation anyway
        out = D(x, *d_args, **(d_kwargs or {}))
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"D must return a tensor of logits, got {type(out).__name__}")
    total = out.sum()
    scale = None
    if scaler is not None and scaler.is_enabled():
        # The scale as a tensor on out's device, without reading it back to the host,
        # spread over the outputs: each logit's gradient is then scale / N (the default
        # 2**16 itself is not a finite float16).
        scale = scaler.scale(torch.ones((), device=out.device, dtype=torch.float32)) / max(out.numel(), 1)
        total = total.float() * scale
    with no_weight_gradients():
        (grad,) = torch.autograd.grad(total, x, create_graph=True)
    if scale is not None:
        grad = grad.float() * scale.reciprocal()
    return grad, out


def r1_penalty(
    D: Callable,
    real: torch.Tensor,
    gamma: float,
    d_args: tuple = (),
    d_kwargs: Optional[dict] = None,
    *,
    scaler=None,
) -> torch.Tensor:
    """R1: ``gamma / 2 * E ||grad_x D(x)||^2`` on real images (Mescheder et al. 2018).

    ``scaler``: the fp16 ``torch.amp.GradScaler`` in use, if any (see the module docs)."""
    grad, _ = _input_grads_and_out(D, real, d_args, d_kwargs, scaler)
    return 0.5 * gamma * grad_penalty(grad, 0.0, "mean")


def r2_penalty(
    D: Callable,
    fake: torch.Tensor,
    gamma: float,
    d_args: tuple = (),
    d_kwargs: Optional[dict] = None,
    *,
    scaler=None,
) -> torch.Tensor:
    """R2: the R1 formula on generated images (``fake`` is detached)."""
    return r1_penalty(D, fake, gamma, d_args, d_kwargs, scaler=scaler)


def wgan_gp_penalty(
    D: Callable,
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    center: float = 1.0,
    d_args: tuple = (),
    d_kwargs: Optional[dict] = None,
    *,
    scaler=None,
    eps: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """WGAN-GP: ``weight * E (||grad D(x_hat)|| - center)^2`` at ``x_hat = lerp(real, fake, eps)``
    with one uniform ``eps`` per sample (Gulrajani et al. 2017). ``eps`` (shape (N,) or
    broadcastable to real) may be given for reproducibility."""
    if real.shape != fake.shape:
        raise ValueError(f"fake: shape {tuple(fake.shape)} differs from real's {tuple(real.shape)}")
    x_hat = _interpolate(real, fake, eps)
    grad, _ = _input_grads_and_out(D, x_hat, d_args, d_kwargs, scaler)
    return weight * grad_penalty(grad, center, "mean")


def _interpolate(real, fake, eps):
    bshape = (real.shape[0],) + (1,) * (real.dim() - 1)
    if eps is None:
        eps = torch.rand(bshape, device=real.device, dtype=real.dtype)
    else:
        eps = eps.to(device=real.device, dtype=real.dtype)
        if eps.dim() == 1:
            eps = eps.reshape(bshape)
    return torch.lerp(real.detach(), fake.detach(), eps)


def d_loss_with_r1(
    D: Callable,
    real: torch.Tensor,
    fake_logits: Optional[torch.Tensor],
    gamma: float,
    kind: str = "nonsaturating",
    d_args: tuple = (),
    d_kwargs: Optional[dict] = None,
    *,
    scaler=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """D's adversarial loss and the R1 penalty from ONE forward pass on the real images.

    Returns ``(d_loss(D(real), fake_logits, kind), r1)``; backpropagate their sum (with
    lazy regularization, ``loss + r1 * interval`` on the steps where R1 is due). With
    ``fake_logits=None`` the loss is the reals' half, ``d_loss_real(D(real), kind)`` (the
    fakes' half backpropagated before, as the trainer does)."""
    _check_kind(kind)
    grad, real_logits = _input_grads_and_out(D, real, d_args, d_kwargs, scaler)
    loss = d_loss_real(real_logits, kind) if fake_logits is None else d_loss(real_logits, fake_logits, kind)
    return loss, 0.5 * gamma * grad_penalty(grad, 0.0, "mean")


# -- naive definitions (test references) ----------------------------------------------


def _input_grads_naive(D: Callable, x: torch.Tensor, d_args, d_kwargs) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    out = D(x, *d_args, **(d_kwargs or {}))
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad


def r1_penalty_naive(D: Callable, real: torch.Tensor, gamma: float, d_args: tuple = (), d_kwargs: Optional[dict] = None) -> torch.Tensor:
    """Textbook R1 with stock ops: autograd.grad, then square, sum, mean."""
    grad = _input_grads_naive(D, real, d_args, d_kwargs)
    return 0.5 * gamma * _acc(grad).square().flatten(1).sum(1).mean()


def r2_penalty_naive(D: Callable, fake: torch.Tensor, gamma: float, d_args: tuple = (), d_kwargs: Optional[dict] = None) -> torch.Tensor:
    return r1_penalty_naive(D, fake, gamma, d_args, d_kwargs)


def wgan_gp_penalty_naive(
    D: Callable,
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    center: float = 1.0,
    d_args: tuple = (),
    d_kwargs: Optional[dict] = None,
    eps: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Textbook WGAN-GP with stock ops: norm, subtract, square, mean."""
    if real.shape != fake.shape:
        raise ValueError(f"fake: shape {tuple(fake.shape)} differs from real's {tuple(real.shape)}")
    x_hat = _interpolate(real, fake, eps)
    grad = _input_grads_naive(D, x_hat, d_args, d_kwargs)
    norm = _acc(grad).flatten(1).norm(dim=1)
    return weight * (norm - center).square().mean()


# -- lazy regularization ----------------------------------------------------------------


def lazy_adam_params(lr: float, betas: tuple[float, float], interval: int) -> tuple[float, tuple[float, float]]:
    """Adam's ``lr`` and ``betas`` for a network whose regularizer runs every ``interval``
    steps (StyleGAN2): with ``c = interval / (interval + 1)``, ``lr * c`` and ``betas ** c``.
    ``interval`` of 0 or 1 (no lazy regularization) returns them unchanged."""
    if not isinstance(interval, int) or interval < 0:
        raise ValueError(f"interval must be a non-negative int, got {interval!r}")
    if interval <= 1:
        return lr, tuple(betas)
    c = interval / (interval + 1)
    return lr * c, (betas[0] ** c, betas[1] ** c)


class LazyRegularizer:
    """Applies a regularizer every ``interval`` steps with its loss multiplied by
    ``interval`` (StyleGAN2's lazy regularization). Usage::

        lazy = LazyRegularizer(16)
        opt = torch.optim.Adam(D.parameters(), *lazy.adam_params(2e-3, (0.0, 0.99)))
        for step in ...:
            if lazy.due():
                loss, r1 = d_loss_with_r1(D, real, D(fake), gamma)
                loss = loss + lazy.scale(r1)
            else:
                loss = d_loss(D(real), D(fake))
            ...
            lazy.step()
    """

    def __init__(self, interval: int) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"LazyRegularizer: interval must be a positive int, got {interval!r}")
        self.interval = interval
        self.count = 0

    def due(self) -> bool:
        """True on the steps where the regularizer runs (the first, then every interval-th)."""
        return self.count % self.interval == 0

    def scale(self, penalty: torch.Tensor) -> torch.Tensor:
        return penalty * self.interval

    def step(self) -> None:
        self.count += 1

    def adam_params(self, lr: float, betas: tuple[float, float]) -> tuple[float, tuple[float, float]]:
        return lazy_adam_params(lr, betas, self.interval)

    def state_dict(self) -> dict:
        return {"interval": self.interval, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.interval, self.count = int(state["interval"]), int(state["count"])


# -- path-length regularization (StyleGAN2) ---------------------------------------------


class PathLengthPenalty:
    """StyleGAN2's path-length penalty on a generator with ``mapping``, ``synthesis`` and
    ``num_ws`` (:class:`fastgan.models.StyleGAN2Generator`)::

        noise   = randn_like(img) / sqrt(H * W)
        lengths = || d sum(img * noise) / d ws ||  per sample (squares summed over w_dim,
                                                   averaged over the num_ws layers, sqrt)
        penalty = weight * mean((lengths - pl_mean)^2)
        pl_mean = lerp(pl_mean, mean(lengths), decay)           (after the penalty)

    ``__call__`` returns the weighted penalty (NOT multiplied by the lazy interval: the
    caller does that, as with R1), differentiable w.r.t. G's parameters (the gradient w.r.t.
    ``ws`` is taken with ``create_graph=True``; G's blocks run without activation
    checkpointing meanwhile, see ``fastgan.nn.no_activation_checkpointing``), then updates
    ``pl_mean``.

    One difference from StyleGAN2-ADA, on purpose: the penalty is taken against the running
    mean from *before* this batch (a constant), where ADA first folds this batch's mean into
    it and lets the gradient flow through that (a ``decay / N`` share). So the penalty is a
    plain mean over samples: micro-batches (gradient accumulation) and data-parallel ranks sum
    to exactly the one-big-batch gradient, and the trainer updates ``pl_mean`` once per step
    with the mean over all micro-batches and ranks (:meth:`lengths`, :meth:`penalty`,
    :meth:`update`). ``pl_mean`` is a float32 scalar tensor; it moves to the device of the
    first lengths it sees. ``state_dict`` / ``load_state_dict`` carry it across checkpoints.

    AMP: under bf16 autocast nothing is needed; with fp16 and a ``GradScaler`` pass
    ``scaler=`` (as for :func:`r1_penalty`): the first backward runs on the scaled sum and the
    gradients are unscaled in float32; an overflow gives a non-finite penalty.
    """

    def __init__(self, weight: float = 2.0, decay: float = 0.01) -> None:
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
            raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
        if not (isinstance(decay, (int, float)) and 0.0 < decay <= 1.0):
            raise ValueError(f"decay must be in (0, 1], got {decay!r}")
        self.weight, self.decay = float(weight), float(decay)
        self.pl_mean = torch.zeros((), dtype=torch.float32)

    def lengths(self, G, ws: torch.Tensor, noise: Optional[torch.Tensor] = None, *, scaler=None) -> torch.Tensor:
        """Per-sample path lengths ``(N,)`` at ``ws``: ``(N, num_ws, w_dim)`` or ``(N, w_dim)``
        (the same w for every layer), in float32 (float64 for float64 G). ``noise``: a
        standard normal like G's images (drawn here when None)."""
        if ws.dim() == 2:
            ws = ws[:, None].expand(-1, G.num_ws, -1)
        if not ws.requires_grad:
            ws = ws.detach().requires_grad_(True)
        with no_activation_checkpointing():  # the double backward keeps every activation anyway
            img = _acc(G.synthesis(ws))
        h, w = img.shape[-2:]
        if noise is None:
            noise = torch.randn_like(img)
        elif noise.shape != img.shape:
            raise ValueError(f"noise: shape {tuple(noise.shape)} differs from the images' {tuple(img.shape)}")
        total = (img * noise.to(img.dtype)).sum() / math.sqrt(h * w)
        scale = None
        if scaler is not None and scaler.is_enabled():
            scale = scaler.scale(torch.ones((), device=img.device, dtype=torch.float32))
            total = total * scale
        with no_weight_gradients():  # only the gradient w.r.t. ws is wanted here
            (grad,) = torch.autograd.grad(total, ws, create_graph=True)
        grad = _acc(grad)
        if scale is not None:
            grad = grad * scale.reciprocal()
        return grad.square().sum(2).mean(1).sqrt()

    def penalty(self, lengths: torch.Tensor) -> torch.Tensor:
        """``weight * mean((lengths - pl_mean)^2)`` against the current running mean."""
        self._to(lengths.device)
        return self.weight * (lengths - self.pl_mean.to(lengths.dtype)).square().mean()

    @torch.no_grad()
    def update(self, mean_length: torch.Tensor) -> None:
        """``pl_mean = lerp(pl_mean, mean_length, decay)``; a non-finite mean is ignored."""
        mean_length = torch.as_tensor(mean_length).detach().float()
        self._to(mean_length.device)
        if bool(torch.isfinite(mean_length)):
            self.pl_mean.lerp_(mean_length.to(self.pl_mean.device), self.decay)

    def __call__(self, G, z: Optional[torch.Tensor] = None, *, ws: Optional[torch.Tensor] = None,
                 noise: Optional[torch.Tensor] = None, scaler=None, update: bool = True) -> torch.Tensor:
        """The weighted penalty for latents ``z`` (through ``G.mapping``) or styles ``ws``
        (e.g. style-mixed); then ``pl_mean`` follows this batch's mean when ``update``."""
        if (z is None) == (ws is None):
            raise ValueError("PathLengthPenalty: pass exactly one of z and ws")
        if ws is None:
            ws = G.mapping(z)
        lengths = self.lengths(G, ws, noise, scaler=scaler)
        pen = self.penalty(lengths)
        if update:
            self.update(lengths.detach().mean())
        return pen

    def _to(self, device: torch.device) -> None:
        if self.pl_mean.device != device:
            self.pl_mean = self.pl_mean.to(device)

    def state_dict(self) -> dict:
        return {"pl_mean": self.pl_mean.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        value = torch.as_tensor(state["pl_mean"], dtype=torch.float32)
        if value.numel() != 1:
            raise ValueError(f"pl_mean: expected a scalar, got shape {tuple(value.shape)}")
        self.pl_mean = value.reshape(()).to(self.pl_mean.device).clone()


def path_length_penalty_naive(G, ws: torch.Tensor, noise: torch.Tensor, pl_mean: float, weight: float) -> torch.Tensor:
    """Textbook path-length penalty (test reference): per sample, the gradient of
    ``sum(img * noise / sqrt(H W))`` w.r.t. its ``(num_ws, w_dim)`` styles, one sample at a time."""
    if not ws.requires_grad:
        ws = ws.detach().requires_grad_(True)
    lengths = []
    for i in range(ws.shape[0]):
        wi = ws[i:i + 1]
        img = G.synthesis(wi)
        h, w = img.shape[-2:]
        (g,) = torch.autograd.grad((img * noise[i:i + 1]).sum() / math.sqrt(h * w), wi, create_graph=True)
        lengths.append(g[0].pow(2).sum(1).mean().sqrt())
    return weight * (torch.stack(lengths) - pl_mean).pow(2).mean()


# -- WGAN weight clipping ----------------------------------------------------------------


def clip_weights_hook(optimizer: torch.optim.Optimizer, module: Union[torch.nn.Module, Iterable[torch.nn.Parameter]], clip: float = 0.01):
    """Original WGAN (Arjovsky et al. 2017): after every ``optimizer.step()``, clamp each
    parameter of ``module`` to ``[-clip, clip]``. Returns the hook handle (``.remove()``)."""
    if not (isinstance(clip, (int, float)) and math.isfinite(clip) and clip > 0):
        raise ValueError(f"clip must be a positive finite number, got {clip!r}")
    params = list(module.parameters()) if isinstance(module, torch.nn.Module) else list(module)

    def hook(opt, args, kwargs):
        with torch.no_grad():
            for p in params:
                p.clamp_(-clip, clip)

    return optimizer.register_step_post_hook(hook)
