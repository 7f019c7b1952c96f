import pytest
import torch

from fastgan import use_layers
from fastgan.models import DCGANDiscriminator, DCGANGenerator
from fastgan.nn import BatchNormAct, Conv2dAct, ConvTranspose2dAct, LinearAct
from fastgan.train.build import build_models
from fastgan.train.config import PRESETS, make_config

from .conftest import requires_ext


def _pair(**kw):
    torch.manual_seed(0)
    G = DCGANGenerator(z_dim=16, base_ch=8, **kw)
    torch.manual_seed(0)
    D = DCGANDiscriminator(base_ch=8, resolution=G.resolution, num_classes=G.num_classes)
    return G, D


class _Kit(torch.nn.Module):
    """Runs the wrapped module in one layer kit (the model, its parameters, unchanged)."""

    def __init__(self, module, kit):
        super().__init__()
        self.module, self.kit = module, kit

    def forward(self, *args, **kw):
        with use_layers(self.kit):
            return self.module(*args, **kw)


def _copy(m):
    import copy

    return copy.deepcopy(m)


@pytest.mark.parametrize("resolution", [28, 32, 64])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_dcgan_shapes_and_layer_kits_agree(resolution, num_classes):
    Gf, Df = _pair(resolution=resolution, num_classes=num_classes)
    Gs, Ds = _Kit(_copy(Gf), "stock"), _Kit(_copy(Df), "stock")
    z = torch.randn(5, 16)
    y = torch.randint(0, 3, (5,)) if num_classes else None
    args = (y,) if num_classes else ()
    xf, xs = Gf(z, *args), Gs(z, *args)
    assert xf.shape == (5, 1, resolution, resolution)
    torch.testing.assert_close(xf, xs, atol=1e-5, rtol=1e-5)
    lf, ls = Df(xf, *args), Ds(xf, *args)
    assert lf.shape == (5,)
    torch.testing.assert_close(lf, ls, atol=1e-5, rtol=1e-5)
    # gradients agree too (fused bias+act backward vs stock)
    gf = torch.autograd.grad(Df(xf.detach(), *args).sum(), list(Df.parameters()))
    gs = torch.autograd.grad(Ds(xf.detach(), *args).sum(), list(Ds.parameters()))
    for a, b in zip(gf, gs):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@requires_ext()
def test_fused_build_actually_uses_bias_act(monkeypatch):
    """The fastgan kit runs the compiled ops (bias_act, batch_norm_act); the stock kit
    runs none of them, on the same model."""
    import importlib

    BN = importlib.import_module("fastgan.ops.batch_norm_act")  # the modules, not the functions
    BA = importlib.import_module("fastgan.ops.bias_act")

    calls, bn_calls = [], []
    real, real_bn = BA._OP, BN._OP
    monkeypatch.setattr(BA, "_OP", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    monkeypatch.setattr(BN, "_OP", lambda *a, **k: bn_calls.append(a[7]) or real_bn(*a, **k))
    G, D = _pair()
    D(G(torch.randn(2, 16)))
    assert {"tanh", "lrelu"} <= set(calls) | set(bn_calls)
    assert "relu" in bn_calls  # G's batch norm layers run the fused op
    calls.clear()
    bn_calls.clear()
    with use_layers("stock"):
        D(G(torch.randn(2, 16)))
    assert calls == [] and bn_calls == []


@pytest.mark.parametrize("cls,args", [(Conv2dAct, (3, 4, 3, 1, 1)), (ConvTranspose2dAct, (3, 4, 4, 2, 1)), (LinearAct, (3, 4))])
@pytest.mark.parametrize("act", ["linear", "relu", "lrelu", "tanh"])
def test_layer_kits_match(cls, args, act):
    torch.manual_seed(1)
    a = cls(*args, act=act, clamp=0.5)
    b = _Kit(_copy(a), "stock")
    x = torch.randn(2, 3, 5, 5) if cls is not LinearAct else torch.randn(2, 3)
    torch.testing.assert_close(a(x), b(x))


def test_batchnorm_act_matches_and_tracks_stats():
    a = BatchNormAct(4, "lrelu")
    with torch.no_grad():
        a.weight.uniform_(0.5, 2)
        a.bias.uniform_(-1, 1)
    b = _Kit(_copy(a), "stock")
    x = torch.randn(6, 4, 3, 3) * 3 + 1
    torch.testing.assert_close(a(x), b(x))
    torch.testing.assert_close(a.running_mean, b.module.running_mean)
    torch.testing.assert_close(a.running_var, b.module.running_var)
    assert int(a.num_batches_tracked) == 1
    a.eval(), b.eval()
    torch.testing.assert_close(a(x), b(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="resolution"):
        DCGANGenerator(resolution=48)
    with pytest.raises(ValueError, match="layers"):
        with use_layers("cudnn"):
            pass
    with pytest.raises(ValueError, match="labels"):
        DCGANGenerator(num_classes=3)(torch.randn(2, 100))
    with pytest.raises(ValueError, match="norm"):
        DCGANDiscriminator(norm="spectral")


def test_wgan_gp_discriminator_has_no_batchnorm():
    G, D = build_models(make_config("fmnist-wgan-gp", overrides=dict(base_ch=8)))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in G.modules())


def test_every_preset_builds():
    for name in PRESETS:
        cfg = make_config(name)
        assert cfg.model


def test_stylegan2_and_progan_layer_kits_agree():
    from fastgan.models.progan import ProGANDiscriminator, ProGANGenerator
    from fastgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

    for Gc, Dc, gkw, dkw in ((StyleGAN2Generator, StyleGAN2Discriminator, dict(z_dim=16, resolution=16, img_channels=3, base_ch=256, max_ch=16),
                              dict(resolution=16, img_channels=3, base_ch=256, max_ch=16)),
                             (ProGANGenerator, ProGANDiscriminator, dict(z_dim=16, resolution=16, img_channels=3, base_ch=16, max_ch=16),
                              dict(resolution=16, img_channels=3, base_ch=16, max_ch=16))):
        torch.manual_seed(0)
        Gf, Df = Gc(**gkw).eval(), Dc(**dkw)
        Gs, Ds = _Kit(_copy(Gf), "stock"), _Kit(_copy(Df), "stock")
        z = torch.randn(4, 16)
        torch.manual_seed(1)
        xf = Gf(z)
        torch.manual_seed(1)
        xs = Gs(z)
        assert xf.shape == (4, 3, 16, 16)
        torch.testing.assert_close(xf, xs, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(Df(xf), Ds(xf), atol=1e-4, rtol=1e-4)
        # second-order gradients (R1) flow through both builds
        x = xf.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(Df(x).sum(), x, create_graph=True)
        g.square().sum().backward()
        first = Df.from_rgb if isinstance(Df.from_rgb, torch.nn.Module) and hasattr(Df.from_rgb, "weight") else Df.from_rgb[-1]
        assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
        x = xf.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(Ds(x).sum(), x, create_graph=True)
        g.square().sum().backward()
        first = Ds.module.from_rgb if hasattr(Ds.module.from_rgb, "weight") else Ds.module.from_rgb[-1]
        assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0


def test_progan_schedule_and_stylegan2_truncation():
    from fastgan.models.progan import ProGANGenerator, _schedule
    from fastgan.models.stylegan2 import StyleGAN2Generator

    assert _schedule(0.5, 1.0, 4) == (0, 1.0)
    assert _schedule(1.25, 1.0, 4) == (1, 0.25)
    assert _schedule(2.5, 1.0, 4) == (1, 1.0)
    assert _schedule(100.0, 1.0, 4) == (3, 1.0)
    G = ProGANGenerator(8, 16, 1, 16, 16)
    G.set_progress(0.0, 1.0)
    x = G(torch.randn(2, 8))
    assert x.shape == (2, 1, 16, 16) and torch.equal(x[:, :, ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3), x)
    S = StyleGAN2Generator(8, 16, 1, 128, 8).eval()
    z = torch.randn(2, 8)
    torch.manual_seed(0)
    a = S(z, truncation=0.0)
    torch.manual_seed(0)
    b = S(torch.randn(2, 8), truncation=0.0)
    torch.testing.assert_close(a, b)  # psi = 0: every z maps to w_avg
    with pytest.raises(ValueError, match="resolution"):
        StyleGAN2Generator(resolution=48)


@pytest.mark.parametrize("scaled", ["composed", "lean"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_stylegan2_modconv_forms_and_kits_agree_float64(layout, scaled, monkeypatch):
    """Every (layers, modconv) combination of the StyleGAN2 generator computes the same
    images and the same parameter gradients (noise strengths set non-zero so the noise
    path counts); the discriminators' R1 penalties and their gradients agree too. "lean":
    the batched form's x * style not saved (scaled_input_conv2d) on these tiny maps too."""
    import sys

    if scaled == "lean":
        monkeypatch.setattr(sys.modules["fastgan.ops.conv2d_gradfix"], "_SCALED_MIN_NUMEL", 0)
    from fastgan.losses import r1_penalty, r1_penalty_naive
    from fastgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    kw = dict(z_dim=8, resolution=16, img_channels=3, base_ch=128, max_ch=8)
    torch.manual_seed(0)
    ref = StyleGAN2Generator(modconv="grouped", **kw).double()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("noise_strength") or name.endswith(".bias"):
                p.normal_(0, 0.5)
    z = torch.randn(3, 8, dtype=torch.float64)
    outs = {}
    for layers in ("stock", "fastgan"):
        for modconv in ("grouped", "batched"):
            G = StyleGAN2Generator(modconv=modconv, **kw).double().to(memory_format=fmt)
            G.load_state_dict(ref.state_dict())
            torch.manual_seed(7)
            img = _Kit(G, layers)(z)
            if layers == "fastgan":  # the model's own layout out (internally channels_last on CPU)
                assert img.is_contiguous(memory_format=fmt), modconv
            (img * torch.linspace(-1, 1, img.numel(), dtype=img.dtype).reshape(img.shape)).sum().backward()
            outs[layers, modconv] = (img.detach(), {n: p.grad for n, p in G.named_parameters()})
    img0, g0 = outs["stock", "grouped"]
    for key, (img, grads) in outs.items():
        torch.testing.assert_close(img, img0, msg=lambda m: f"{key}: {m}")
        for n, g in grads.items():
            assert g is not None, (key, n)
            torch.testing.assert_close(g, g0[n], msg=lambda m: f"{key} {n}: {m}")
    with pytest.raises(ValueError, match="modconv"):
        StyleGAN2Generator(modconv="fused", **kw)

    for clamp in (None, 0.3):  # 0.3: the clamp is active on a good share of activations
        dkw = dict(resolution=16, img_channels=3, base_ch=128, max_ch=8, clamp=clamp)
        torch.manual_seed(0)
        Df = StyleGAN2Discriminator(**dkw).double().to(memory_format=fmt)
        Ds = _Kit(_copy(Df), "stock")
        x = img0.contiguous(memory_format=fmt)
        pf, ps = r1_penalty(Df, x, 10.0), r1_penalty_naive(Ds, x, 10.0)
        torch.testing.assert_close(pf, ps)
        pf.backward()
        ps.backward()
        for (n, a), b in zip(Df.named_parameters(), Ds.module.parameters()):
            torch.testing.assert_close(a.grad, b.grad, msg=lambda m: f"D {n} clamp={clamp}: {m}")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("case", ["convT_1x1_input", "convT_thin", "conv_thin", "conv_wide"])
def test_cpu_conv_shortcuts_match_stock_float64(case, layout):
    """The fastgan kit's CPU shortcuts (a transposed conv on a 1x1 input as one matrix
    product; thin transposed convs as GEMM + col2im; thin convs' input gradient as
    col2im(W^T G)) against the stock layers: outputs, input and parameter gradients, and
    gradients of gradients (a WGAN-GP penalty differentiates D's input gradient)."""
    torch.manual_seed(0)
    cls, args, shape = {
        "convT_1x1_input": (ConvTranspose2dAct, (6, 4, 7, 1, 0), (3, 6, 1, 1)),
        "convT_thin": (ConvTranspose2dAct, (5, 3, 4, 2, 1), (3, 5, 6, 7)),
        "conv_thin": (Conv2dAct, (3, 6, 4, 2, 1), (3, 3, 10, 9)),
        "conv_wide": (Conv2dAct, (8, 6, 3, 2, 1), (3, 8, 9, 9)),
    }[case]
    a = cls(*args, act="lrelu").double()
    b = _Kit(_copy(a), "stock")
    x = torch.randn(shape, dtype=torch.float64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    outs = []
    for m in (a, b):
        xi = x.clone().requires_grad_(True)
        y = m(xi)
        g = torch.autograd.grad(y.square().sum(), [xi] + list(m.parameters()), create_graph=True)
        gg = torch.autograd.grad(g[0].square().sum(), [xi] + list(m.parameters()))
        outs.append((y,) + g + gg)
    for u, v in zip(*outs):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10)


def test_dcgan_fastgan_kit_gradients_match_stock_float64():
    """The whole DCGAN (fastgan kit: channels_last inside on CPU, the conv shortcuts) against
    the stock kit in float64: images, logits, and the G step's gradients, which pass
    through D's input gradient into every layer of G."""
    Gf, Df = _pair(resolution=28)
    Gf, Df = Gf.double(), Df.double()
    Gs, Ds = _Kit(_copy(Gf), "stock"), _Kit(_copy(Df), "stock")
    z = torch.randn(4, 16, dtype=torch.float64)
    grads = []
    for G, D in ((Gf, Df), (Gs, Ds)):
        img = G(z)
        assert img.is_contiguous()
        loss = D(img).sum()
        grads.append([img, loss] + list(torch.autograd.grad(loss, list(G.parameters()) + list(D.parameters()))))
    for u, v in zip(*grads):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-9)


def test_batch_norm_act_gain_none_is_the_same_in_both_kits():
    """gain/alpha None resolve to batch_norm_act's defaults (1, 0.2) for both kits."""
    m = BatchNormAct(4, "lrelu", alpha=None, gain=None)
    assert (m.gain, m.alpha) == (1.0, 0.2)
    x = torch.randn(3, 4, 5, 5)
    torch.testing.assert_close(m(x), _Kit(_copy(m), "stock")(x))


def _grads(module):
    return {n: (p.grad.clone() if p.grad is not None else None) for n, p in module.named_parameters()}


@pytest.mark.parametrize("kit", ["fastgan", "stock"])
def test_stylegan2_checkpointing_gives_the_same_gradients(kit):
    """Activation checkpointing of G's and D's blocks (non-reentrant) recomputes the same
    function: the same images (the noise is replayed), the same G gradients, and the same
    R1 penalty and parameter gradients through its double backward, in float64."""
    from fastgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

    kw = dict(z_dim=8, resolution=16, img_channels=3, base_ch=128, max_ch=8)
    dkw = dict(resolution=16, img_channels=3, base_ch=128, max_ch=8, clamp=0.5)
    outs = {}
    for ck in (False, True):
        torch.manual_seed(0)
        G = StyleGAN2Generator(checkpoint=ck, **kw).double()
        D = StyleGAN2Discriminator(checkpoint=ck, **dkw).double()
        with torch.no_grad():
            for name, p in G.named_parameters():
                if name.endswith("noise_strength"):
                    p.fill_(0.3)
        z = torch.randn(3, 8, dtype=torch.float64)
        real = torch.randn(3, 3, 16, 16, dtype=torch.float64)
        with use_layers(kit):
            torch.manual_seed(5)
            img = G(z)
            D(img).square().sum().backward()
            # R1 by hand: the losses' penalties turn checkpointing off (no_activation_checkpointing)
            x = real.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
            r1 = 5.0 * g.square().sum((1, 2, 3)).mean()
            D.zero_grad()
            r1.backward()
        outs[ck] = img.detach(), _grads(G), r1.detach(), _grads(D)
    (img0, g0, r0, d0), (img1, g1, r1_, d1) = outs[False], outs[True]
    torch.testing.assert_close(img1, img0)
    torch.testing.assert_close(r1_, r0)
    for ref, got, who in ((g0, g1, "G"), (d0, d1, "D")):
        for n in ref:
            assert (ref[n] is None) == (got[n] is None), (who, n)
            if ref[n] is not None:
                torch.testing.assert_close(got[n], ref[n], msg=lambda m: f"{who} {n}: {m}")
    assert any(v is not None and v.abs().sum() > 0 for v in d1.values())


@pytest.mark.parametrize("low", ["bf16", "fp16"])
def test_stylegan2_low_precision_layers(low):
    """low_precision_res=N runs the N highest resolutions of G and D in bf16/fp16 (and
    only those): images and logits stay float32, and the gradients stay close to the
    float32 model's (the parameters are shared)."""
    from fastgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[low]
    kw = dict(z_dim=16, resolution=32, img_channels=3, base_ch=512, max_ch=16, clamp=256.0)
    torch.manual_seed(0)
    G32, D32 = StyleGAN2Generator(**kw), StyleGAN2Discriminator(**{k: v for k, v in kw.items() if k != "z_dim"})
    G = StyleGAN2Generator(low_precision_res=2, low_precision=low, **kw)
    D = StyleGAN2Discriminator(low_precision_res=2, low_precision=low, **{k: v for k, v in kw.items() if k != "z_dim"})
    G.load_state_dict(G32.state_dict())
    D.load_state_dict(D32.state_dict())
    seen = {}
    hooks = [m.register_forward_hook(lambda m, a, o, name=name: seen.__setitem__(name, o.dtype))
             for name, m in list(G.named_modules()) + [("D." + n, m) for n, m in D.named_modules()]
             if name.endswith(("conv0", "conv1")) or name.startswith("blocks.") and name.count(".") == 2]
    z = torch.randn(4, 16)
    res = {}
    for name, (g, d) in (("fp32", (G32, D32)), (low, (G, D))):
        torch.manual_seed(3)
        img = g(z)
        logits = d(img)
        assert img.dtype == torch.float32 and logits.dtype == torch.float32
        logits.sum().backward()
        res[name] = img.detach(), _grads(g), _grads(d)
    for h in hooks:
        h.remove()
    # G: 32 px has blocks for 8, 16, 32: the two highest (16, 32) in low precision
    assert seen["blocks.0.1"] == torch.float32 and seen["blocks.1.1"] == dtype and seen["blocks.2.1"] == dtype
    # D: blocks take 32 and 16 px inputs (low precision), then 8 px (float32)
    assert seen["D.blocks.0.conv1"] == dtype and seen["D.blocks.1.conv1"] == dtype and seen["D.blocks.2.conv1"] == torch.float32
    img32, g32, d32 = res["fp32"]
    imgl, gl, dl = res[low]
    # fp16 on the CPU: torch 2.11's fp16 convolutions lose more than 2.14's (G's gradients
    # 8% off in relative norm, against < 2% on 2.14): the bf16 bound for both
    tol = 0.05
    assert (imgl - img32).norm() <= tol * img32.norm()
    for ref, got, who in ((g32, gl, "G"), (d32, dl, "D")):
        num = sum(((got[n] - ref[n]).norm() ** 2 for n in ref if ref[n] is not None))
        den = sum((ref[n].norm() ** 2 for n in ref if ref[n] is not None))
        assert num.sqrt() <= 2 * tol * den.sqrt(), (who, float(num.sqrt() / den.sqrt()))
    with pytest.raises(ValueError, match="low_precision"):
        StyleGAN2Generator(low_precision="int8", **kw)
    with pytest.raises(ValueError, match="low_precision_res"):
        StyleGAN2Discriminator(low_precision_res=-1, resolution=32)


def test_memory_options_only_for_stylegan2():
    with pytest.raises(ValueError, match="checkpoint_blocks"):
        make_config("fmnist-dcgan", overrides=dict(checkpoint_blocks=True))
    with pytest.raises(ValueError, match="low_precision_res"):
        make_config("fmnist-dcgan", overrides=dict(low_precision_res=2))
    cfg = make_config("stylegan2-256", overrides=dict(resolution=16, max_ch=8, low_precision_res=1, checkpoint_blocks=True))
    G, D = build_models(cfg)
    assert G.checkpoint and D.checkpoint and G.low_dtype == torch.bfloat16 and G.conv4.clamp == 256.0


def test_penalties_run_without_activation_checkpointing(monkeypatch):
    """R1 (and the other input-gradient penalties) and the path length enter
    no_activation_checkpointing: under their double backward checkpointing saves nothing.
    Plain forward passes with gradients do checkpoint every block."""
    import fastgan.models.stylegan2 as sg
    from fastgan.losses import PathLengthPenalty, r1_penalty

    calls = []
    real_ckpt = sg._checkpoint
    monkeypatch.setattr(sg, "_checkpoint", lambda *a, **k: calls.append(1) or real_ckpt(*a, **k))
    torch.manual_seed(0)
    G = sg.StyleGAN2Generator(z_dim=8, resolution=16, img_channels=3, base_ch=128, max_ch=8, checkpoint=True)
    D = sg.StyleGAN2Discriminator(resolution=16, img_channels=3, base_ch=128, max_ch=8, checkpoint=True)
    D(G(torch.randn(2, 8))).sum().backward()
    assert len(calls) == len(G.blocks) + len(D.blocks)
    calls.clear()
    r1_penalty(D, torch.randn(2, 3, 16, 16), 1.0).backward()
    PathLengthPenalty()(G, torch.randn(2, 8)).backward()
    assert calls == []


@pytest.mark.parametrize("kit", ["fastgan", "stock"])
def test_stylegan2_checkpointing_leaks_nothing(kit):
    """Iterations with activation checkpointing keep the number of live tensors flat. (With
    torch's default early stop, the aborted recomputation leaked the output of every C++
    autograd function it interrupted: fastgan's bias_act and fused blocks.)"""
    import gc

    from fastgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

    torch.manual_seed(0)
    G = StyleGAN2Generator(z_dim=8, resolution=16, img_channels=3, base_ch=128, max_ch=8, checkpoint=True)
    D = StyleGAN2Discriminator(resolution=16, img_channels=3, base_ch=128, max_ch=8, checkpoint=True)

    def live():
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) in (torch.Tensor, torch.nn.Parameter))

    counts = []
    with use_layers(kit):
        for _ in range(4):
            D.requires_grad_(False)  # a G step: D's weight gradients are not needed
            D(G(torch.randn(2, 8))).sum().backward()
            D.requires_grad_(True)  # a D step
            D(torch.randn(2, 3, 16, 16)).sum().backward()
            G.zero_grad(set_to_none=True)
            D.zero_grad(set_to_none=True)
            counts.append(live())
    assert counts[1:] == counts[:1] * 3, counts
