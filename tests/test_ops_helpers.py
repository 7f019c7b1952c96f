"""The private helpers shared by the ops (fastgan/ops/_common.py, _fir.py): one definition
each, used by every op that needs it (DESIGN.md: "one helper lives in one place")."""

import importlib

import pytest
import torch

from fastgan.ops import _common, _fir


@pytest.mark.parametrize("name", ["upfirdn2d", "bias_act", "upsample_conv2d", "grad_penalty"])
def test_ops_share_one_dtype_set(name):
    mod = importlib.import_module(f"fastgan.ops.{name}")  # the module, not the function
    assert mod.FLOAT_DTYPES is _common.FLOAT_DTYPES


def test_pair():
    assert _common.pair(3, "padding", "op") == (3, 3)
    assert _common.pair([1, 2], "padding", "op") == (1, 2)
    assert _common.pair((1, 2), "padding", "op") == (1, 2)
    for bad in (True, 1.0, (1, 2, 3), [1.0, 2], "ab"):
        with pytest.raises(ValueError, match=r"^conv2d: stride must be an int or a pair of ints"):
            _common.pair(bad, "stride", "conv2d")


@pytest.mark.parametrize("fw,fh", [(1, 1), (2, 3), (4, 4), (5, 8)])
def test_same_size_padding(fw, fh):
    """Resampling by 1 pads so that the filtered image keeps its size (filter2d's padding)."""
    for pad in (_fir.up_padding(0, 0, 0, 0, fw, fh, 1, 1), _fir.down_padding(0, 0, 0, 0, fw, fh, 1, 1)):
        assert pad == [fw // 2, (fw - 1) // 2, fh // 2, (fh - 1) // 2]
        assert _fir.filtered_size(7, pad[0], pad[1], fw) == 7
        assert _fir.out_size(7, 1, 1, pad[2], pad[3], fh) == 7


@pytest.mark.parametrize("up,k,fw", [(2, 3, 4), (2, 1, 4), (4, 3, 2), (2, 5, 1)])
def test_transposed_conv_padding_matches_zero_insertion(up, k, fw):
    """conv_transpose2d(stride=up, padding=tpad) then the filter padded by fpad equals zero
    insertion, the up-padded filter and a 'valid' convolution (conv2d_resample's contract)."""
    x = torch.randn(1, 1, 5, 6, dtype=torch.float64)
    w = torch.randn(1, 1, k, k, dtype=torch.float64)
    f = torch.randn(fw, fw, dtype=torch.float64)
    p = k // 2
    tpad, fpad = _fir.transposed_conv_padding(p, p, p, p, fw, fw, k, k, up)
    t = torch.nn.functional.conv_transpose2d(x, w.flip([2, 3]), stride=up, padding=tpad)
    fast = torch.nn.functional.conv2d(torch.nn.functional.pad(t, fpad), f[None, None])
    z = torch.zeros(1, 1, 5 * up, 6 * up, dtype=torch.float64)
    z[:, :, ::up, ::up] = x
    u = _fir.up_padding(p, p, p, p, fw, fw, up, up)
    slow = torch.nn.functional.conv2d(torch.nn.functional.pad(z, u), f[None, None])
    slow = torch.nn.functional.conv2d(slow, w)
    assert fast.shape == slow.shape
    torch.testing.assert_close(fast, slow)
