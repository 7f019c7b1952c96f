"""fastgan::batch_norm_act on CUDA (the composite path: ATen's batch norm, then the bias_act
kernel) against the float64 CPU results: values, statistics, layouts, dtypes, gradients,
create_graph, the module, compile. Skipped without a GPU; FASTGAN_TEST_CUDA_ON_CPU=1 runs
the same tests on the CPU kernels (tests/cuda_device.py)."""

import pytest
import torch
import torch.nn.functional as F

from fastgan import use_layers
from fastgan.nn import BatchNormAct
from fastgan.ops import batch_norm_act, batch_norm_act_ref
from tests.cuda_device import DEVICE, MARKS, tf32_off

pytestmark = MARKS


@pytest.fixture(autouse=True)
def _full_fp32():
    with tf32_off():
        yield


def _x(shape, dtype, layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 1
    if layout == "channels_last" and len(shape) == 4:
        x = x.to(memory_format=torch.channels_last)
    return x.to(dtype)


TOL = {torch.float64: 1e-9, torch.float32: 2e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}


@pytest.mark.parametrize("shape", [(4, 3, 5, 7), (16, 64, 7, 7), (3, 5), (2, 3, 33, 17)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("training", [True, False])
def test_forward_matches_float64(shape, layout, dtype, training):
    x = _x(shape, dtype, layout)
    c = shape[1]
    w = torch.rand(c, dtype=torch.float64) + 0.5
    b = torch.randn(c, dtype=torch.float64)
    rm, rv = torch.randn(c, dtype=torch.float64), torch.rand(c, dtype=torch.float64) + 0.5
    pdt = torch.float64 if dtype == torch.float64 else torch.float32  # autocast-style params
    stat = pdt
    for act in ("relu", "lrelu", "tanh"):
        rm_d, rv_d = rm.to(DEVICE, stat).clone(), rv.to(DEVICE, stat).clone()
        y = batch_norm_act(x.to(DEVICE), rm_d, rv_d, w.to(DEVICE, pdt), b.to(DEVICE, pdt), training, 0.1, 1e-5,
                           act, 0.2, 1.3)
        ref = batch_norm_act_ref(x.double(), rm.clone(), rv.clone(), w, b, training, 0.1, 1e-5, act, 0.2, 1.3)
        assert y.device.type == torch.device(DEVICE).type and y.dtype == dtype and y.stride() == x.stride()
        tol = TOL[dtype] * max(1.0, ref.abs().max().item())
        torch.testing.assert_close(y.cpu().double(), ref, rtol=0, atol=tol, msg=act)
        if training:  # running statistics as ATen updates them
            rm2, rv2 = rm.clone(), rv.clone()
            F.batch_norm(x.double(), rm2, rv2, None, None, True, 0.1, 1e-5)
            torch.testing.assert_close(rm_d.cpu().double(), rm2, rtol=1e-3, atol=1e-3)
            torch.testing.assert_close(rv_d.cpu().double(), rv2, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("act", ["relu", "lrelu", "tanh"])
def test_gradients_match_float64(layout, training, act):
    x = _x((8, 6, 5, 5), torch.float64, layout)
    w, b = torch.rand(6, dtype=torch.float64) + 0.5, torch.randn(6, dtype=torch.float64)
    rm, rv = torch.randn(6, dtype=torch.float64), torch.rand(6, dtype=torch.float64) + 0.5
    gy = torch.randn_like(x)
    out = {}
    for dev in ("cpu", DEVICE):
        xs, ws, bs = (t.to(dev).requires_grad_(True) for t in (x, w, b))
        y = batch_norm_act(xs, rm.to(dev), rv.to(dev), ws, bs, training, 0.1, 1e-5, act, 0.2, 1.1)
        out[dev] = [g.cpu() for g in torch.autograd.grad(y, (xs, ws, bs), gy.to(dev))]
        assert out[dev][0].stride() == x.stride()
    for a, c in zip(out["cpu"], out[DEVICE]):
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-9)


def test_create_graph_matches_reference():
    x = _x((6, 5, 4, 4), torch.float64, "channels_last").to(DEVICE).requires_grad_(True)
    w = (torch.rand(5, dtype=torch.float64) + 0.5).to(DEVICE).requires_grad_(True)
    res = {}
    for name, fn in (("fused", batch_norm_act), ("ref", batch_norm_act_ref)):
        y = fn(x, None, None, w, None, True, 0.1, 1e-5, "tanh", 0.2, 1.0)
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        res[name] = torch.autograd.grad(g.square().sum(), (x, w))
    for a, c in zip(res["fused"], res["ref"]):
        torch.testing.assert_close(a, c, rtol=1e-8, atol=1e-9)


def test_module_float32_and_autocast():
    torch.manual_seed(0)
    m = BatchNormAct(8, "lrelu").to(DEVICE)
    s = BatchNormAct(8, "lrelu").to(DEVICE)  # run under use_layers("stock")
    s.load_state_dict(m.state_dict())
    x = torch.randn(4, 8, 6, 6, device=DEVICE)
    with use_layers("stock"):
        ys = s(x)
    torch.testing.assert_close(m(x), ys, rtol=1e-5, atol=1e-5)
    low = torch.bfloat16
    with torch.autocast(torch.device(DEVICE).type, dtype=low):
        y1 = m(x.to(low))
        with use_layers("stock"):
            y2 = s(x.to(low))
    assert y1.dtype == y2.dtype
    torch.testing.assert_close(y1.float(), y2.float(), rtol=0.05, atol=0.05)
    torch.testing.assert_close(m.running_var, s.running_var, rtol=1e-2, atol=1e-2)


def test_compile_fullgraph():
    m = BatchNormAct(4, "relu").to(DEVICE)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    x = torch.randn(3, 4, 5, 5, device=DEVICE, requires_grad=True)
    y = compiled(x)
    torch.autograd.grad(y.sum(), x)
    assert y.shape == x.shape
