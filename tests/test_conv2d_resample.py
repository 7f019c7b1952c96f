import itertools

import pytest
import torch
import torch.nn.functional as F

from fastgan import _backend
from fastgan.ops import conv2d_resample, setup_filter, upfirdn2d_ref


def _pad4(padding):
    if isinstance(padding, int):
        return [padding] * 4
    return list(padding) if len(padding) == 4 else [padding[0], padding[0], padding[1], padding[1]]


def _contract(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    """The contract written the slow way: zero-insert + filter at the high resolution
    (gain up**2), full-resolution convolution, then filter + decimate."""
    fw, fh = (1, 1) if f is None else (f.shape[-1], f.shape[0])
    px0, px1, py0, py1 = _pad4(padding)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2
    x = upfirdn2d_ref(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], gain=up**2,
                      flip_filter=flip_filter)
    if not flip_weight:
        w = w.flip([2, 3])
    x = F.conv2d(x, w, groups=groups)
    if down > 1:
        x = upfirdn2d_ref(x, f, down=down, flip_filter=flip_filter)
    return x


CASES = list(
    itertools.product(
        [1, 3],  # kernel size
        [(1, 1), (2, 1), (1, 2), (2, 2)],  # up, down
        [1, 2],  # groups
        [True, False],  # flip_weight
    )
)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("k,updown,groups,flip_weight", CASES)
def test_against_contract(k, updown, groups, flip_weight, layout):
    up, down = updown
    torch.manual_seed(k * 100 + up * 10 + down + groups)
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    w = torch.randn(6, 4 // groups, k, k, dtype=torch.float64)
    for f, padding, flip_filter in (
        (setup_filter([1, 3, 3, 1]), k // 2, False),
        (setup_filter([1, 2, 1], separable=True), [k // 2, 1, 0, k // 2], True),
        (None, k // 2, False),
    ):
        y = conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter)
        r = _contract(x, w, f, up, down, padding, groups, flip_weight, flip_filter)
        assert y.shape == r.shape
        torch.testing.assert_close(y, r, rtol=1e-6, atol=1e-6)
        # The fastgan references give the same result.
        with _backend.use_reference():
            yr = conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter)
        torch.testing.assert_close(y, yr, rtol=1e-6, atol=1e-6)


def test_shapes_and_gradients():
    torch.manual_seed(1)
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    assert conv2d_resample(x, w, f, up=2, padding=1).shape == (2, 4, 16, 16)
    assert conv2d_resample(x, w, f, down=2, padding=1).shape == (2, 4, 4, 4)
    assert conv2d_resample(x, w, padding=1).shape == (2, 4, 8, 8)
    for kw in (dict(up=2, padding=1), dict(down=2, padding=1)):
        assert torch.autograd.gradcheck(lambda x, w: conv2d_resample(x, w, f, **kw), (x, w))
    y = conv2d_resample(x, w, f, up=2, padding=1)
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    gx.sum().backward()  # second order through conv_transpose2d and upfirdn2d
    assert w.grad is not None


def test_float32_and_half_precision():
    torch.manual_seed(2)
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 8, 8, 8)
    w = torch.randn(8, 8, 3, 3) / 8
    for kw in (dict(up=2, padding=1), dict(down=2, padding=1)):
        r = _contract(x.double(), w.double(), f, kw.get("up", 1), kw.get("down", 1), 1, 1, True, False)
        torch.testing.assert_close(conv2d_resample(x, w, f, **kw).double(), r, rtol=1e-4, atol=1e-4)
        yb = conv2d_resample(x.bfloat16(), w.bfloat16(), f, **kw)
        assert yb.dtype == torch.bfloat16
        torch.testing.assert_close(yb.double(), r, rtol=5e-2, atol=5e-2)


def test_errors():
    x = torch.randn(1, 2, 6, 6)
    w = torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match="x must be"):
        conv2d_resample(x[0], w)
    with pytest.raises(ValueError, match="w must be"):
        conv2d_resample(x, w[0])
    with pytest.raises(TypeError, match="dtype"):
        conv2d_resample(x, w.double())
    with pytest.raises(ValueError, match="f must be"):
        conv2d_resample(x, w, f=torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="up must be"):
        conv2d_resample(x, w, up=0)
    with pytest.raises(ValueError, match="down must be"):
        conv2d_resample(x, w, down=1.5)
