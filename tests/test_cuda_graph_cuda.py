"""Every fastgan op can be captured in a CUDA graph: a small StyleGAN2-style G + D training
iteration (D step with R1 through the fused ops' double backward, G step, capturable Adam)
is captured with torch.cuda.graph, replayed, and must give bit for bit the results of the
same iterations run eagerly from the same starting state.

Capture fails on a host synchronization (a .item(), a device-to-host copy), on memory not
from the caching allocator and on work queued to a stream other than the current one, so
this test is the check of those three properties. It needs a GPU (skipped otherwise, also
under FASTGAN_TEST_CUDA_ON_CPU=1).
"""

from __future__ import annotations

import copy

import pytest
import torch

from fastgan import losses
from fastgan.train.build import build_models
from fastgan.train.config import make_config
from tests.cuda_device import MARKS, cuda_only

pytestmark = MARKS + [cuda_only("CUDA graphs")]

STEPS = 3


def _models():
    cfg = make_config("stylegan2-256", overrides=dict(resolution=16, max_ch=16, batch_size=4))
    torch.manual_seed(0)
    G, D = build_models(cfg, 0)
    # No per-pixel noise: the graph and the eager twin would draw different random numbers
    # (the comparison is bitwise); everything else in G and D stays.
    for m in G.modules():
        if getattr(m, "noise_strength", None) is not None:
            m.noise_strength = None
    G, D = G.cuda(), D.cuda()
    opt_g = torch.optim.Adam(G.parameters(), 2e-3, betas=(0.0, 0.99), capturable=True)
    opt_d = torch.optim.Adam(D.parameters(), 2e-3, betas=(0.0, 0.99), capturable=True)
    return cfg, G, D, opt_g, opt_d


def _iteration(G, D, opt_g, opt_d, real, z1, z2):
    """D step (non-saturating loss + R1) then G step; returns the losses as a tensor."""
    with torch.no_grad():
        fake = G(z1)
    loss_d = losses.d_loss(D(real), D(fake))
    r1 = losses.r1_penalty(D, real, 1.0)
    opt_d.zero_grad(set_to_none=True)
    (loss_d + r1).backward()
    opt_d.step()
    D.requires_grad_(False)
    loss_g = losses.g_loss(D(G(z2)))
    D.requires_grad_(True)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return torch.stack([loss_d.detach(), r1.detach(), loss_g.detach()])


def _inputs(cfg, n):
    gen = torch.Generator().manual_seed(1)
    shape = (cfg.batch_size, cfg.img_channels, cfg.resolution, cfg.resolution)
    return [
        (torch.rand(shape, generator=gen).cuda() * 2 - 1,
         torch.randn((cfg.batch_size, cfg.z_dim), generator=gen).cuda(),
         torch.randn((cfg.batch_size, cfg.z_dim), generator=gen).cuda())
        for _ in range(n)
    ]


@pytest.fixture
def deterministic():
    """cuDNN's default algorithms may use atomics: replay and eager must run the same
    deterministic kernels to be compared bit for bit."""
    det, bench = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = det, bench


def test_train_iteration_with_r1_captures_and_replays(deterministic):
    cfg, G, D, opt_g, opt_d = _models()
    warm = _inputs(cfg, 3)
    data = _inputs(cfg, STEPS)

    # Warm-up on a side stream (as torch.cuda.graph requires): lazy state such as Adam's
    # moments and the fused ops' parsed filters is created before the capture.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for batch in warm:
            _iteration(G, D, opt_g, opt_d, *batch)
    torch.cuda.current_stream().wait_stream(side)

    # The eager twin starts from exactly the warmed-up state.
    twin = [copy.deepcopy(m) for m in (G, D)]
    twin_opt_g = torch.optim.Adam(twin[0].parameters(), 2e-3, betas=(0.0, 0.99), capturable=True)
    twin_opt_d = torch.optim.Adam(twin[1].parameters(), 2e-3, betas=(0.0, 0.99), capturable=True)
    twin_opt_g.load_state_dict(opt_g.state_dict())
    twin_opt_d.load_state_dict(opt_d.state_dict())

    static = tuple(t.clone() for t in data[0])
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_losses = _iteration(G, D, opt_g, opt_d, *static)

    # The capture recorded the work without running it; the replays run the iterations.
    graphed = []
    for batch in data:
        for dst, src in zip(static, batch):
            dst.copy_(src)
        graph.replay()
        graphed.append(static_losses.clone())
    eager = [_iteration(twin[0], twin[1], twin_opt_g, twin_opt_d, *batch) for batch in data]
    torch.cuda.synchronize()

    for i, (a, b) in enumerate(zip(graphed, eager)):
        assert torch.isfinite(a).all(), f"iteration {i}: non-finite losses {a}"
        assert torch.equal(a, b), f"iteration {i}: graph {a.tolist()} vs eager {b.tolist()}"
    for name, (p, q) in zip([n for n, _ in G.named_parameters()] + [n for n, _ in D.named_parameters()],
                            zip(list(G.parameters()) + list(D.parameters()),
                                list(twin[0].parameters()) + list(twin[1].parameters()))):
        assert torch.equal(p, q), f"parameter {name} differs after {STEPS} replays"
