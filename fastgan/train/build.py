"""A :class:`~fastgan.train.config.TrainConfig` -> (G, D): which model, sizes, layer kit, the
activation clamp under fp16 and the discriminator's normalization are training policy, read
here; fastgan.models only has constructors that take plain arguments."""

from __future__ import annotations

from torch import nn

from ..models import DCGANDiscriminator, DCGANGenerator

__all__ = ["build_models"]


def build_models(cfg, num_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    """(G, D) for a :class:`fastgan.train.config.TrainConfig`. The layer kit
    (``cfg.layers``) is not the models' business: the trainer runs them under
    ``fastgan.use_layers(cfg.layers)``; the parameters are the same either way."""
    low = cfg.precision == "fp16" or cfg.low_precision_res > 0
    clamp = cfg.act_clamp if cfg.act_clamp is not None else (256.0 if low else None)
    if cfg.model in ("dcgan", "cgan", "wgan", "wgan-gp"):
        nc = num_classes if cfg.model == "cgan" else 0
        if cfg.model == "cgan" and nc < 1:
            raise ValueError("num_classes: the conditional GAN needs a labelled dataset with >= 1 class")
        G = DCGANGenerator(cfg.z_dim, cfg.resolution, cfg.img_channels, cfg.base_ch, cfg.max_ch, nc, clamp=clamp)
        D = DCGANDiscriminator(cfg.resolution, cfg.img_channels, cfg.base_ch, cfg.max_ch, nc,
                               norm="none" if cfg.model == "wgan-gp" else cfg.d_norm, clamp=clamp)
        return G, D
    if cfg.model == "progan":
        from ..models.progan import ProGANDiscriminator, ProGANGenerator
        G = ProGANGenerator(cfg.z_dim, cfg.resolution, cfg.img_channels, cfg.base_ch, cfg.max_ch)
        D = ProGANDiscriminator(cfg.resolution, cfg.img_channels, cfg.base_ch, cfg.max_ch)
        return G, D
    if cfg.model == "stylegan2":
        from ..models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
        mem = dict(checkpoint=cfg.checkpoint_blocks, low_precision_res=cfg.low_precision_res,
                   low_precision=cfg.low_precision)
        G = StyleGAN2Generator(cfg.z_dim, cfg.resolution, cfg.img_channels, cfg.base_ch, cfg.max_ch, clamp=clamp, **mem)
        D = StyleGAN2Discriminator(cfg.resolution, cfg.img_channels, cfg.base_ch, cfg.max_ch, clamp=clamp, **mem)
        return G, D
    raise ValueError(f"model: unknown {cfg.model!r}")
