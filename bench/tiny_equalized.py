"""Per-call cost of fastgan.nn's equalized layers on tiny tensors: forward + backward, the
fastgan kit against the stock kit (use_layers), interleaved in one process, medians (us).

    .venv/bin/python bench/tiny_equalized.py
"""
import time, statistics, torch
from fastgan import use_layers
from fastgan.nn import EqualConv2d, EqualLinear
torch.manual_seed(0)
cases = {
    "EqualConv2d 3x3 lrelu (2,8,4,4)": (EqualConv2d(8, 8, 3, padding=1, act="lrelu"), torch.randn(2, 8, 4, 4)),
    "EqualConv2d 3x3 linear (2,8,4,4)": (EqualConv2d(8, 8, 3, padding=1), torch.randn(2, 8, 4, 4)),
    "EqualConv2d down2 lrelu (2,8,8,8)": (EqualConv2d(8, 8, 3, padding=1, act="lrelu", down=2), torch.randn(2, 8, 8, 8)),
    "EqualConv2d up2 box lrelu (2,8,4,4)": (EqualConv2d(8, 8, 3, padding=1, act="lrelu", up=2, filter=(1, 1)), torch.randn(2, 8, 4, 4)),
    "EqualLinear lrelu (2,8)": (EqualLinear(8, 8, activation="lrelu"), torch.randn(2, 8)),
    "EqualLinear linear (2,8)": (EqualLinear(8, 8), torch.randn(2, 8)),
}
def run(m, x):
    x = x.requires_grad_(True)
    m(x).sum().backward()
for name, (m, x) in cases.items():
    t = {"fastgan": [], "stock": []}
    for i in range(400):
        for kit in ("fastgan", "stock") if i % 2 else ("stock", "fastgan"):
            with use_layers(kit):
                s = time.perf_counter(); run(m, x); t[kit].append(time.perf_counter() - s)
    f, s = (statistics.median(v[50:]) * 1e6 for v in t.values())
    print(f"{name:40s} fastgan {f:7.1f} us  stock {s:7.1f} us  x{s/f:.2f}")
