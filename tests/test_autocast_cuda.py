"""fp16 / bf16 autocast through fastgan's public ops and nn modules on CUDA: the
convolutions run in the half type, the fused kernels take their output (with the float32
bias cast to it) and the parameters' gradients come back in float32. Each result is
compared with the same computation in float64 through the pure-PyTorch references on the
CPU. Skipped without a GPU; under FASTGAN_TEST_CUDA_ON_CPU=1 the fp16 cases skip and the
bf16 cases run with CPU autocast (tests/cuda_device.py)."""

import copy

import pytest
import torch

import fastgan.nn as fnn
from fastgan.ops import downsample_conv2d, upsample_conv2d, use_reference
from tests.cuda_device import DEVICE, MARKS, ON_CPU, tf32_off

pytestmark = MARKS

# Errors relative to max |reference|. Autocast rounds the convolutions' inputs and outputs
# to 11 (fp16) / 8 (bf16) significant bits; the fused kernels compute in float32 and round
# their result once more; a few roundings of sums of O(100) terms: ~8 ulps of the result.
# Gradients take one more rounded pass (the convolution's backward in the half type).
REL = {torch.float16: 8 * 2**-11, torch.bfloat16: 8 * 2**-8}
GRAD_REL = {torch.float16: 16 * 2**-11, torch.bfloat16: 16 * 2**-8}
DTYPES = [
    pytest.param(torch.float16, id="fp16", marks=pytest.mark.skipif(ON_CPU, reason="fp16 autocast: CUDA only (FASTGAN_TEST_CUDA_ON_CPU=1)")),
    pytest.param(torch.bfloat16, id="bf16"),
]


@pytest.fixture(autouse=True)
def _full_fp32():
    with tf32_off():
        yield


def _close(a, r, rel, what):
    err = (a.detach().double().cpu() - r.detach().double().cpu()).abs().max().item()
    bound = rel * max(1.0, r.detach().double().abs().max().item())
    assert err <= bound, (what, err, bound)


def _run(module, x, dtype, gy_seed=0):
    """Output and parameter + input gradients of module(x) under autocast (on DEVICE) and
    in float64 through the references (on the CPU)."""
    m = module.to(DEVICE)
    m64 = copy.deepcopy(module).cpu().double()
    xd = x.to(DEVICE).requires_grad_()
    with torch.autocast(DEVICE, dtype=dtype):
        y = m(xd)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(gy_seed), dtype=torch.float64)
    params = [p for p in m.parameters()]
    grads = torch.autograd.grad(y, [xd] + params, gy.to(DEVICE, y.dtype))
    x64 = x.double().cpu().requires_grad_()
    with use_reference():
        y64 = m64(x64)
        grads64 = torch.autograd.grad(y64, [x64] + list(m64.parameters()), gy)
    names = ["x"] + [n for n, _ in m.named_parameters()]
    return y, y64, list(zip(names, grads, grads64, [xd] + params))


def _check(module, x, dtype, check_grads=True):
    y, y64, grads = _run(module, x, dtype)
    assert y.device.type == DEVICE and y.dtype == dtype
    _close(y, y64, REL[dtype], "y")
    for name, g, g64, p in grads if check_grads else ():
        assert g.dtype == p.dtype, name  # parameters (and x) stay float32
        _close(g, g64, GRAD_REL[dtype], "grad " + name)


def _x(*shape, seed=0, cl=False):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return x.contiguous(memory_format=torch.channels_last) if cl else x


# Smooth activations without clamp for the gradient checks: with relu / lrelu / clamp, an
# element whose pre-activation rounds across the kink gets an O(1) different derivative.

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cl", [False, True], ids=["nchw", "cl"])
@pytest.mark.parametrize("act", ["swish", "linear"])
def test_up_conv2d_module(dtype, cl, act):
    torch.manual_seed(1)
    _check(fnn.UpConv2d(16, 12, 3, act=act), _x(2, 16, 8, 9, cl=cl), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cl", [False, True], ids=["nchw", "cl"])
def test_down_conv2d_module(dtype, cl):
    torch.manual_seed(2)
    _check(fnn.DownConv2d(12, 16, 3, act="tanh"), _x(2, 12, 16, 14, seed=1, cl=cl), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_module_chain(dtype):
    """A layer fed by another autocast layer gets a half-precision input with float32
    weights, as stock convolutions do under autocast."""
    torch.manual_seed(6)
    chain = torch.nn.Sequential(fnn.UpConv2d(8, 8, 3, act="softplus"), fnn.DownConv2d(8, 6, 3, act="tanh"))
    _check(chain, _x(2, 8, 6, 7, seed=5), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose2d_act_module(dtype):
    torch.manual_seed(3)
    _check(fnn.ConvTranspose2dAct(8, 6, 4, stride=2, padding=1, act="gelu"), _x(2, 8, 7, 7, seed=2), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_equalized_modules(dtype):
    torch.manual_seed(4)
    _check(fnn.EqualConv2d(6, 10, 3, padding=1, bias_init=0.1), _x(2, 6, 9, 9, seed=3), dtype)
    _check(fnn.EqualLinear(24, 12, bias_init=0.2, activation="swish"), _x(5, 24, seed=4), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_act_and_resample_modules_after_a_conv(dtype):
    torch.manual_seed(5)
    conv = torch.nn.Conv2d(5, 6, 3, padding=1, bias=False)
    for tail in (fnn.BiasAct(6, act="softplus"), fnn.FusedLeakyReLU(6), fnn.Upsample(),
                 fnn.Downsample(), fnn.Blur((1, 2, 1), padding=1)):
        kink = isinstance(tail, fnn.FusedLeakyReLU)  # lrelu: forward only (see above)
        if isinstance(tail, (fnn.BiasAct, fnn.FusedLeakyReLU)):
            torch.nn.init.normal_(tail.bias)
        _check(torch.nn.Sequential(copy.deepcopy(conv), tail), _x(2, 5, 10, 12, seed=6), dtype,
               check_grads=not kink)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cl", [False, True], ids=["nchw", "cl"])
def test_public_ops_forward_with_kinks(dtype, cl):
    """The ops themselves under autocast, lrelu with clamp (forward: continuous there)."""
    g = torch.Generator().manual_seed(7)
    x = _x(2, 16, 8, 8, seed=8, cl=cl).to(DEVICE)
    w = (torch.randn(12, 16, 3, 3, generator=g) * 0.2).to(DEVICE)
    b = torch.randn(12, generator=g).to(DEVICE)
    wd = (torch.randn(10, 12, 3, 3, generator=g) * 0.2).to(DEVICE)
    bd = torch.randn(10, generator=g).to(DEVICE)
    with torch.autocast(DEVICE, dtype=dtype):
        h = upsample_conv2d(x, w, b, act="lrelu", clamp=1.5)
        y = downsample_conv2d(h, wd, bd, act="lrelu", clamp=1.0)
    assert h.dtype == dtype and y.dtype == dtype
    with use_reference():
        h64 = upsample_conv2d(x.double().cpu(), w.double().cpu(), b.double().cpu(), act="lrelu", clamp=1.5)
        y64 = downsample_conv2d(h64, wd.double().cpu(), bd.double().cpu(), act="lrelu", clamp=1.0)
    _close(h, h64, REL[dtype], "h")
    _close(y, y64, 2 * REL[dtype], "y")
