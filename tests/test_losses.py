"""fastgan.losses: adversarial losses, penalties equal to their naive definitions (value
and gradients w.r.t. D's parameters) on stock and fastgan discriminators, the shared
forward, lazy regularization, weight clipping, AMP."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastgan import losses
from fastgan.losses import (
    LOSS_KINDS,
    LazyRegularizer,
    clip_weights_hook,
    d_loss,
    d_loss_with_r1,
    g_loss,
    lazy_adam_params,
    r1_penalty,
    r1_penalty_naive,
    r2_penalty,
    r2_penalty_naive,
    wgan_gp_penalty,
    wgan_gp_penalty_naive,
)
from fastgan.nn import EqualConv2d, EqualLinear
from fastgan.ops import bias_act


class StockD(nn.Module):
    """Small conditional discriminator of stock layers; label embedding via d_args."""

    def __init__(self, n_classes=0):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 1)
        self.embed = nn.Embedding(n_classes, 16 * 4 * 4) if n_classes else None

    def forward(self, x, labels=None, scale=1.0):
        x = F.leaky_relu(self.c1(x), 0.2) * math.sqrt(2)
        x = F.softplus(self.c2(x))  # smooth: non-trivial second derivatives
        h = x.flatten(1)
        out = self.fc(h)
        if self.embed is not None:
            out = out + (h * self.embed(labels)).sum(1, keepdim=True)
        return out * scale


class FastD(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = EqualConv2d(3, 8, 3, padding=1, bias=False)
        self.b1 = nn.Parameter(torch.randn(8) * 0.1)
        self.c2 = EqualConv2d(8, 16, 3, stride=2, padding=1)
        self.fc1 = EqualLinear(16 * 4 * 4, 32, activation="lrelu")
        self.fc2 = EqualLinear(32, 1)

    def forward(self, x):
        x = self.c1(x)
        x = bias_act(x, self.b1.to(x.dtype), act="lrelu")
        x = F.softplus(self.c2(x))
        return self.fc2(self.fc1(x.flatten(1)))


def _params_grads(D, loss):
    params = [p for p in D.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params, allow_unused=True)


def _assert_same(D, a, b, tol):
    torch.testing.assert_close(a, b, **tol)
    for ga, gb in zip(_params_grads(D, a), _params_grads(D, b)):
        if ga is None or gb is None:
            assert ga is None and gb is None or (ga if gb is None else gb).abs().max() == 0
            continue
        torch.testing.assert_close(ga, gb, **tol)


TOLS = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-4, atol=1e-5)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("Dcls", [StockD, FastD])
def test_penalties_equal_naive(dtype, Dcls):
    torch.manual_seed(0)
    D = Dcls().to(dtype)
    real = torch.randn(4, 3, 8, 8, dtype=dtype)
    fake = torch.randn(4, 3, 8, 8, dtype=dtype)
    tol = TOLS[dtype]
    _assert_same(D, r1_penalty(D, real, 10.0), r1_penalty_naive(D, real, 10.0), tol)
    _assert_same(D, r2_penalty(D, fake, 0.5), r2_penalty_naive(D, fake, 0.5), tol)
    eps = torch.rand(4)
    for center in (1.0, 0.0):
        _assert_same(
            D,
            wgan_gp_penalty(D, real, fake, 10.0, center, eps=eps),
            wgan_gp_penalty_naive(D, real, fake, 10.0, center, eps=eps),
            tol,
        )
    # the penalty has a non-zero gradient for every weight (the last bias has none)
    weights = [p for p in D.parameters() if p.dim() > 1]
    grads = torch.autograd.grad(r1_penalty(D, real, 1.0), weights)
    assert all(g.abs().sum() > 0 for g in grads)


def test_conditional_d_args_and_kwargs():
    torch.manual_seed(0)
    D = StockD(n_classes=3).double()
    real = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    labels = torch.randint(0, 3, (5,))
    a = r1_penalty(D, real, 2.0, d_args=(labels,), d_kwargs={"scale": 3.0})
    b = r1_penalty_naive(D, real, 2.0, d_args=(labels,), d_kwargs={"scale": 3.0})
    _assert_same(D, a, b, TOLS[torch.float64])
    c = r1_penalty(D, real, 2.0, d_args=(labels,))
    torch.testing.assert_close(a, 9 * c)
    eps = torch.full((5,), 0.25, dtype=torch.float64)
    _assert_same(D, wgan_gp_penalty(D, real, real.flip(0), d_args=(labels,), eps=eps),
                 wgan_gp_penalty_naive(D, real, real.flip(0), d_args=(labels,), eps=eps), TOLS[torch.float64])


def test_d_loss_with_r1_shares_one_forward():
    torch.manual_seed(0)
    D = StockD().double()
    calls = []
    D.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    real = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    fake_logits = D(torch.randn(4, 3, 8, 8, dtype=torch.float64))
    calls.clear()
    for kind in LOSS_KINDS:
        loss, r1 = d_loss_with_r1(D, real, fake_logits.detach(), 10.0, kind)
        assert len(calls) == 1
        calls.clear()
        ref_loss = d_loss(D(real), fake_logits.detach(), kind)
        ref_r1 = r1_penalty_naive(D, real, 10.0)
        calls.clear()
        _assert_same(D, loss + r1, ref_loss + ref_r1, TOLS[torch.float64])


def test_zero_gradient_discriminator_no_nan():
    w = nn.Parameter(torch.tensor(2.0))
    D = lambda x: w * (0 * x).flatten(1).sum(1, keepdim=True)  # noqa: E731  grad_x = 0 * w
    real, fake = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    gp = wgan_gp_penalty(D, real, fake, weight=10.0)
    assert gp.item() == pytest.approx(10.0)
    (g,) = torch.autograd.grad(gp, w)
    assert g == 0  # defined as 0 at a zero norm (as torch.linalg.norm's backward does)
    assert torch.autograd.grad(wgan_gp_penalty_naive(D, real, fake), w)[0] == 0
    assert r1_penalty(D, real, 10.0).item() == 0


def test_nan_input_gives_nan_penalty():
    D = StockD()
    real = torch.randn(2, 3, 8, 8)
    real[0, 0, 0, 0] = float("nan")
    assert torch.isnan(r1_penalty(D, real, 1.0))
    assert torch.isnan(wgan_gp_penalty(D, real, torch.randn_like(real)))


def test_adversarial_losses():
    r = torch.tensor([1.0, -2.0, 0.5])
    f = torch.tensor([-1.0, 0.3, 2.0])
    sp = F.softplus
    torch.testing.assert_close(d_loss(r, f, "nonsaturating"), sp(-r).mean() + sp(f).mean())
    torch.testing.assert_close(d_loss(r, f, "minimax"), -(torch.sigmoid(r).log().mean() + (1 - torch.sigmoid(f)).log().mean()))
    torch.testing.assert_close(d_loss(r, f, "hinge"), F.relu(1 - r).mean() + F.relu(1 + f).mean())
    torch.testing.assert_close(d_loss(r, f, "wasserstein"), f.mean() - r.mean())
    torch.testing.assert_close(d_loss(r, f, "lsgan"), 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f**2).mean())
    torch.testing.assert_close(g_loss(f, "minimax"), (1 - torch.sigmoid(f)).log().mean())
    torch.testing.assert_close(g_loss(f, "nonsaturating"), -torch.sigmoid(f).log().mean())
    torch.testing.assert_close(g_loss(f, "hinge"), -f.mean())
    torch.testing.assert_close(g_loss(f, "wasserstein"), -f.mean())
    torch.testing.assert_close(g_loss(f, "lsgan"), 0.5 * ((f - 1) ** 2).mean())
    with pytest.raises(ValueError, match="kind"):
        d_loss(r, f, "vanilla")
    assert d_loss(r.half(), f.half()).dtype == torch.float32


def test_lazy_regularization():
    lr, betas = lazy_adam_params(0.002, (0.0, 0.99), 16)
    c = 16 / 17
    assert lr == pytest.approx(0.002 * c)
    assert betas == pytest.approx((0.0, 0.99**c))
    assert lazy_adam_params(0.1, (0.5, 0.9), 1) == (0.1, (0.5, 0.9))
    lazy = LazyRegularizer(4)
    due = []
    for _ in range(9):
        due.append(lazy.due())
        lazy.step()
    assert due == [True, False, False, False, True, False, False, False, True]
    assert lazy.scale(torch.tensor(2.0)).item() == 8.0
    state = lazy.state_dict()
    other = LazyRegularizer(1)
    other.load_state_dict(state)
    assert other.interval == 4 and other.count == 9
    with pytest.raises(ValueError, match="interval"):
        LazyRegularizer(0)


def test_clip_weights_hook():
    m = nn.Linear(4, 3)
    opt = torch.optim.SGD(m.parameters(), lr=10.0)
    handle = clip_weights_hook(opt, m, clip=0.01)
    m(torch.randn(5, 4)).square().sum().backward()
    opt.step()
    assert all(p.abs().max() <= 0.01 for p in m.parameters())
    assert any(p.abs().max() == 0.01 for p in m.parameters())
    handle.remove()
    opt.zero_grad()
    m(torch.randn(5, 4)).square().sum().backward()
    opt.step()
    assert any(p.abs().max() > 0.01 for p in m.parameters())
    with pytest.raises(ValueError, match="clip"):
        clip_weights_hook(opt, m, clip=-1)


def test_bf16_autocast_penalties():
    torch.manual_seed(0)
    for Dcls in (StockD, FastD):
        D = Dcls()
        real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
        ref = r1_penalty_naive(D, real, 10.0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            r1 = r1_penalty(D, real, 10.0)
            gp = wgan_gp_penalty(D, real, fake)
        assert r1.dtype == torch.float32 and torch.isfinite(gp)
        torch.testing.assert_close(r1, ref, rtol=0.1, atol=1e-3)
        (r1 + gp).backward()
        assert all(torch.isfinite(p.grad).all() for p in D.parameters() if p.grad is not None)


@pytest.mark.parametrize("autocast", [False, True])
def test_fp16_gradscaler_unscales_penalty(autocast):
    """With scaler=..., the first backward runs on the scaled output and the gradients are
    unscaled before the norm: the penalty and the (unscaled) parameter gradients equal
    the ones computed without any scaling."""
    torch.manual_seed(0)
    D = FastD()
    real = torch.randn(4, 3, 8, 8)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)

    def run(use_scaler):
        D.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.float16, enabled=autocast):
            pen = r1_penalty(D, real, 10.0, scaler=scaler if use_scaler else None)
        if use_scaler:
            scaler.scale(pen).backward()
            opt = torch.optim.SGD(D.parameters(), lr=0.0)
            scaler.unscale_(opt)
        else:
            pen.backward()
        return pen.detach(), [p.grad.clone() for p in D.parameters() if p.dim() > 1]

    pen_ref, grads_ref = run(False)
    pen, grads = run(True)
    tol = dict(rtol=2e-2, atol=1e-4) if autocast else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pen, pen_ref, **tol)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, **tol)


def test_errors():
    with pytest.raises(TypeError, match="D must be callable"):
        r1_penalty("not a module", torch.randn(2, 3), 1.0)
    with pytest.raises(ValueError, match="fake"):
        wgan_gp_penalty(StockD(), torch.randn(2, 3, 8, 8), torch.randn(3, 3, 8, 8))
    assert hasattr(losses, "LOSS_KINDS")


# -- StyleGAN2's generator regularizers ------------------------------------------------


def _tiny_g(noise_strength=0.1, **kw):
    from fastgan.models.stylegan2 import StyleGAN2Generator

    torch.manual_seed(0)
    G = StyleGAN2Generator(z_dim=8, resolution=8, img_channels=1, base_ch=64, max_ch=8, **kw).double()
    with torch.no_grad():  # noise strengths start at 0: make the per-pixel noise count (or not)
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(noise_strength)
    return G


def _pl_inputs(G, n=3, mixed=True):
    from fastgan.models.stylegan2 import mix_styles

    gen = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(n, 8, generator=gen, dtype=torch.float64), torch.randn(n, 8, generator=gen, dtype=torch.float64)
    ws = G.mapping(z1)
    if mixed:
        ws = mix_styles(ws, G.mapping(z2), torch.tensor([1, 3, G.num_ws][:n]), G.num_ws)
    noise = torch.randn(n, 1, 8, 8, generator=gen, dtype=torch.float64)
    return ws, noise


def _pl_run(G, ws_fn, noise, pl_mean=0.3, seed=5):
    """The penalty and its gradients w.r.t. all of G's parameters (mapping included)."""
    pl = losses.PathLengthPenalty(2.0, 0.01)
    pl.pl_mean.fill_(pl_mean)
    torch.manual_seed(seed)  # G's per-pixel noise
    pen = pl(G, ws=ws_fn(), noise=noise)
    params = [p for p in G.parameters()]
    return pen, torch.autograd.grad(pen, params, allow_unused=True), pl


def test_path_length_penalty_equals_naive_float64():
    """Value and parameter gradients (second order through G, mapping included) against a
    per-sample torch.autograd.grad computation in float64."""
    G = _tiny_g()
    pl_mean = float(torch.tensor(0.3))  # the float32 running mean, as the class holds it

    def check(n, skip_noise_strength):
        ws_fn = lambda: _pl_inputs(G, n)[0]  # noqa: E731
        noise = _pl_inputs(G, n)[1]
        pen, grads, _ = _pl_run(G, ws_fn, noise)
        torch.manual_seed(5)  # the same per-pixel noise draws when n == 1
        ref = losses.path_length_penalty_naive(G, ws_fn(), noise, pl_mean, 2.0)
        ref_grads = torch.autograd.grad(ref, list(G.parameters()), allow_unused=True)
        torch.testing.assert_close(pen, ref, rtol=1e-10, atol=1e-12)
        for (name, _), a, b in zip(G.named_parameters(), grads, ref_grads):
            if skip_noise_strength and name.endswith("noise_strength"):
                continue  # its gradient is the noise itself, drawn per call
            assert (a is None) == (b is None), name
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)
        return dict(zip([n for n, _ in G.named_parameters()], grads))

    check(1, False)  # one sample: G's per-pixel noise (strength 0.1) matches too
    with torch.no_grad():  # a batch of 3, mixed styles: G's noise off (the draws differ per call)
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.zero_()
    grads = check(3, True)
    # the mapping network's weights get gradients too (the lengths depend on where ws is)
    assert grads["mapping.net.0.weight"].abs().sum() > 0 and grads["conv4.weight"].abs().sum() > 0


def test_path_length_mean_update_and_state():
    G = _tiny_g(noise_strength=0.0)
    ws, noise = _pl_inputs(G)
    pl = losses.PathLengthPenalty(2.0, 0.25)
    assert pl.pl_mean.dtype == torch.float32 and float(pl.pl_mean) == 0.0
    lengths = pl.lengths(G, ws, noise)
    assert lengths.shape == (3,) and lengths.dtype == torch.float64 and (lengths > 0).all()
    # the penalty is taken against the mean before this batch, then the mean follows
    pen = pl(G, ws=ws, noise=noise)
    torch.testing.assert_close(pen, 2.0 * lengths.square().mean().detach(), rtol=1e-6, atol=0, check_dtype=False)
    m1 = 0.25 * float(lengths.detach().mean())
    assert float(pl.pl_mean) == pytest.approx(m1, rel=1e-6)
    pl(G, ws=ws, noise=noise, update=False)
    assert float(pl.pl_mean) == pytest.approx(m1, rel=1e-6)
    pl.update(torch.tensor(float("nan")))  # ignored
    pl.update(torch.tensor(1.0))
    assert float(pl.pl_mean) == pytest.approx(m1 + 0.25 * (1.0 - m1), rel=1e-6)
    state = pl.state_dict()
    other = losses.PathLengthPenalty(2.0, 0.25)
    other.load_state_dict(state)
    assert torch.equal(other.pl_mean, pl.pl_mean) and other.pl_mean.dtype == torch.float32
    # z instead of ws goes through G.mapping; exactly one of them
    assert torch.isfinite(pl(G, torch.randn(2, 8, dtype=torch.float64)))
    with pytest.raises(ValueError, match="exactly one"):
        pl(G)
    with pytest.raises(ValueError, match="noise"):
        pl(G, ws=ws, noise=noise[:, :, :4])
    with pytest.raises(ValueError, match="decay"):
        losses.PathLengthPenalty(2.0, 0.0)


def _assert_grads_close(grads, other, rtol, atol):
    """Parameter gradients alike: None in the same places, close elsewhere."""
    for a, b in zip(grads, other):
        if a is None or b is None:
            assert a is None and b is None
            continue
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("scaled", ["composed", "lean"])
def test_path_length_same_in_both_layer_kits_float64(scaled, monkeypatch):
    """Also with the modulated convolutions' lean product (not saved, made again in
    backward: scaled_input_conv2d) forced on G's tiny maps: the penalty's double backward."""
    import sys

    from fastgan import use_layers

    if scaled == "lean":
        monkeypatch.setattr(sys.modules["fastgan.ops.conv2d_gradfix"], "_SCALED_MIN_NUMEL", 0)

    G = _tiny_g()
    ws, noise = _pl_inputs(G)
    pen, grads, _ = _pl_run(G, lambda: _pl_inputs(G)[0], noise)
    with use_layers("stock"):
        pen_s, grads_s, _ = _pl_run(G, lambda: _pl_inputs(G)[0], noise)
    torch.testing.assert_close(pen, pen_s, rtol=1e-10, atol=1e-12)
    _assert_grads_close(grads, grads_s, rtol=1e-8, atol=1e-11)


def test_path_length_first_backward_skips_weight_gradients(monkeypatch):
    """The lengths' gradient w.r.t. ws runs inside no_weight_gradients: the modulated
    convolutions' autograd function (scaled_input_conv2d, forced on these tiny maps), which
    cannot see that the weights are not wanted, computes no weight gradient there -- as
    PyTorch's own convolutions do, pruned by the engine."""
    import sys

    from tests.test_conv2d_gradfix import CountBackward

    monkeypatch.setattr(sys.modules["fastgan.ops.conv2d_gradfix"], "_SCALED_MIN_NUMEL", 0)
    G = _tiny_g()
    ws, noise = _pl_inputs(G)
    with CountBackward() as c:
        losses.PathLengthPenalty(2.0, 0.01).lengths(G, ws, noise)
    assert c.conv_masks and all(not mask[1] for mask in c.conv_masks), c.conv_masks


def test_path_length_with_activation_checkpointing_float64():
    """G(checkpoint=True): the same penalty and gradients (the penalty runs G without
    checkpointing, see fastgan.nn.no_activation_checkpointing)."""
    G = _tiny_g()
    Gc = _tiny_g(checkpoint=True)
    Gc.load_state_dict(G.state_dict())
    ws, noise = _pl_inputs(G)
    pen, grads, _ = _pl_run(G, lambda: _pl_inputs(G)[0], noise)
    pen_c, grads_c, _ = _pl_run(Gc, lambda: _pl_inputs(Gc)[0], noise)
    torch.testing.assert_close(pen, pen_c, rtol=1e-12, atol=1e-14)
    _assert_grads_close(grads, grads_c, rtol=1e-10, atol=1e-13)


def test_path_length_bf16_autocast_and_fp16_scaler():
    G = _tiny_g().float()
    gen = torch.Generator().manual_seed(1)
    z, noise = torch.randn(4, 8, generator=gen), torch.randn(4, 1, 8, 8, generator=gen)
    torch.manual_seed(3)
    ref = losses.PathLengthPenalty()(G, z, noise=noise)
    torch.manual_seed(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pen = losses.PathLengthPenalty()(G, z, noise=noise)
    assert pen.dtype == torch.float32 and torch.isfinite(pen)
    torch.testing.assert_close(pen, ref, rtol=0.1, atol=1e-3)
    pen.backward()
    assert all(torch.isfinite(p.grad).all() for p in G.parameters() if p.grad is not None)
    # fp16 scaler: the scaled first backward, unscaled before the norm: the same penalty
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    torch.manual_seed(3)
    scaled = losses.PathLengthPenalty()(G, z, noise=noise, scaler=scaler)
    torch.testing.assert_close(scaled, ref, rtol=1e-5, atol=1e-7)


def test_style_mixing_cutoff_semantics():
    from fastgan.models.stylegan2 import mix_styles
    from fastgan.train.loop import style_mixing_cutoffs

    n, num_ws, w_dim = 4, 6, 3
    w1, w2 = torch.randn(n, w_dim), torch.randn(n, w_dim)
    cutoff = torch.tensor([1, 2, 5, 6])
    ws = mix_styles(w1, w2, cutoff, num_ws)
    assert ws.shape == (n, num_ws, w_dim)
    for i in range(n):
        for layer in range(num_ws):
            expect = w1[i] if layer < cutoff[i] else w2[i]
            assert torch.equal(ws[i, layer], expect)
    assert torch.equal(mix_styles(w1, w2, num_ws, num_ws), w1[:, None].expand(-1, num_ws, -1))  # int: no mixing
    assert torch.equal(mix_styles(w1, w2, 0, num_ws), w2[:, None].expand(-1, num_ws, -1))
    with pytest.raises(ValueError, match="mix_styles"):
        mix_styles(w1, w2[:, None].expand(-1, 5, -1), 2, num_ws)
    # the policy: probability 0 never mixes; 1 always mixes, cutoffs uniform in 1..num_ws-1
    torch.manual_seed(0)
    assert torch.equal(style_mixing_cutoffs(1000, num_ws, 0.0), torch.full((1000,), num_ws))
    c = style_mixing_cutoffs(1000, num_ws, 1.0)
    assert c.min() == 1 and c.max() == num_ws - 1 and len(c.unique()) == num_ws - 1
    c = style_mixing_cutoffs(4000, num_ws, 0.9)
    assert 0.85 < float((c < num_ws).float().mean()) < 0.95
