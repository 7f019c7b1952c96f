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
Original WGAN weight clipping: :func:`clip_weights_hook`.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional, Union

import torch
import torch.nn.functional as F

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
    lsgan: ``(D(x) - 1)^2 / 2 + D(G(z))^2 / 2``.
    """
    _check_kind(kind)
    real, fake = _acc(real_logits), _acc(fake_logits)
    if kind in ("minimax", "nonsaturating"):
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if kind == "wasserstein":
        return fake.mean() - real.mean()
    return 0.5 * ((real - 1).square().mean() + fake.square().mean())


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
    fake_logits: torch.Tensor,
    gamma: float,
    kind: str = "nonsaturating",
    d_args: tuple = (),
    d_kwargs: Optional[dict] = None,
    *,
    scaler=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """D's adversarial loss and the R1 penalty from ONE forward pass on the real images.

    Returns ``(d_loss(D(real), fake_logits, kind), r1)``; backpropagate their sum (with
    lazy regularization, ``loss + r1 * interval`` on the steps where R1 is due)."""
    _check_kind(kind)
    grad, real_logits = _input_grads_and_out(D, real, d_args, d_kwargs, scaler)
    return d_loss(real_logits, fake_logits, kind), 0.5 * gamma * grad_penalty(grad, 0.0, "mean")


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
