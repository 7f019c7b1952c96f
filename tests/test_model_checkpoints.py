"""State dicts written by fastgan's models before the layer-kit merge (commit c95fe2f, when
the models built from fastgan/models/layers.py) load into today's models and give the same
images and logits, in both layer kits (float64).

tests/data/models-c95fe2f.pt holds, per preset (small sizes), G's and D's state dicts with
perturbed weights and G(z) / D(G(z)) for fixed z and noise seed, written by that commit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fastgan import use_layers
from fastgan.train.build import build_models
from fastgan.train.config import make_config

DATA = Path(__file__).parent / "data" / "models-c95fe2f.pt"
PRESETS = {
    "fmnist-dcgan": dict(base_ch=8, z_dim=16),
    "fmnist-cgan": dict(base_ch=8, z_dim=16),
    "progan": dict(resolution=16, base_ch=16, max_ch=16, z_dim=16),
    "stylegan2-256": dict(resolution=16, base_ch=128, max_ch=16, z_dim=16),
}


@pytest.fixture(scope="module")
def saved():
    return torch.load(DATA, weights_only=True)


@pytest.mark.parametrize("kit", ["fastgan", "stock"])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_old_checkpoints_load_and_agree(saved, preset, kit):
    cfg = make_config(preset, overrides=PRESETS[preset])
    G, D = build_models(cfg, 10)
    G, D = G.double().eval(), D.double().eval()
    sg, sd = saved[preset]
    G.load_state_dict(sg)  # strict: the same keys and shapes
    D.load_state_dict(sd)
    z = torch.randn(3, cfg.z_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    args = (torch.tensor([1, 2, 3]),) if preset == "fmnist-cgan" else ()
    torch.manual_seed(3)  # StyleGAN2's noise
    with use_layers(kit), torch.no_grad():
        img = G(z, *args)
        logit = D(img, *args)
    ref_img, ref_logit = saved[preset + "_out"]
    torch.testing.assert_close(img, ref_img)
    torch.testing.assert_close(logit, ref_logit)
