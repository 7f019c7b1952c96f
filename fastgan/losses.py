"""GAN losses and gradient penalties.

Adversarial losses take discriminator logits and return a scalar (the batch mean).
Penalties take the discriminator as a callable; extra inputs of a conditional D (labels)
are passed through ``d_args`` / ``d_kwargs``. Every penalty returns a scalar that is
already multiplied by its weight (``gamma / 2`` for R1/R2, ``weight`` for WGAN-GP) and is
differentiable w.r.t. D's parameters (the gradients are taken with ``create_graph=True``).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

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


def _input_grads(D: Callable, x: torch.Tensor, d_args, d_kwargs) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    out = D(x, *d_args, **(d_kwargs or {}))
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad


def r1_penalty(D: Callable, real: torch.Tensor, gamma: float, d_args: tuple = (), d_kwargs: Optional[dict] = None) -> torch.Tensor:
    """R1: ``gamma / 2 * E ||grad_x D(x)||^2`` on real images (Mescheder et al. 2018)."""
    grad = _input_grads(D, real, d_args, d_kwargs)
    return 0.5 * gamma * _acc(grad).square().flatten(1).sum(1).mean()


def r2_penalty(D: Callable, fake: torch.Tensor, gamma: float, d_args: tuple = (), d_kwargs: Optional[dict] = None) -> torch.Tensor:
    """R2: the R1 formula on generated images."""
    return r1_penalty(D, fake, gamma, d_args, d_kwargs)


def wgan_gp_penalty(
    D: Callable,
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    center: float = 1.0,
    d_args: tuple = (),
    d_kwargs: Optional[dict] = None,
) -> torch.Tensor:
    """WGAN-GP: ``weight * E (||grad D(x_hat)|| - center)^2`` at ``x_hat = lerp(real, fake, eps)``
    with one uniform ``eps`` per sample (Gulrajani et al. 2017)."""
    if real.shape != fake.shape:
        raise ValueError(f"fake: shape {tuple(fake.shape)} differs from real's {tuple(real.shape)}")
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
    x_hat = torch.lerp(real.detach(), fake.detach(), eps)
    grad = _input_grads(D, x_hat, d_args, d_kwargs)
    norm = _acc(grad).flatten(1).norm(dim=1)
    return weight * (norm - center).square().mean()
