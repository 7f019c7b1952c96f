"""CUDA timing of bias_act (CUDA events, warm-up excluded, medians) against the stock
eager composition and a device-to-device copy of the same bytes. Used by gpu_check.sh."""

import math
import statistics

import torch
import torch.nn.functional as F

from fastgan.ops import bias_act


def time_ms(fn, reps=50):
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)


def main():
    shape = (32, 256, 64, 64)
    print(f"device: {torch.cuda.get_device_name()}  shape {shape}")
    print(f"{'case':40s} {'fastgan ms':>10s} {'eager ms':>9s} {'copy ms':>8s} {'x eager':>8s} {'GB/s':>7s}")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for layout in ("contiguous", "channels_last"):
            x = torch.randn(shape, device="cuda", dtype=dtype)
            if layout == "channels_last":
                x = x.to(memory_format=torch.channels_last)
            b = torch.randn(shape[1], device="cuda", dtype=dtype)
            stock = lambda: F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2) * math.sqrt(2)  # noqa: E731
            fused = lambda: bias_act(x, b, 1, "lrelu")  # noqa: E731
            torch.testing.assert_close(fused(), stock(), rtol=2e-2, atol=2e-2)
            out = torch.empty_like(x)
            copy = lambda: out.copy_(x)  # noqa: E731
            tf, te, tc = time_ms(fused), time_ms(stock), time_ms(copy)
            gbs = 2 * x.numel() * x.element_size() / tf / 1e6
            print(f"{'fwd ' + str(dtype)[6:] + ' ' + layout:40s} {tf:10.3f} {te:9.3f} {tc:8.3f} {te / tf:8.2f} {gbs:7.0f}")
            xg = x.detach().requires_grad_()
            bg = b.detach().requires_grad_()
            gy = torch.randn_like(x)

            def fb(fn):
                def run():
                    y = fn(xg, bg)
                    y.backward(gy)
                return run

            tfb = time_ms(fb(lambda x, b: bias_act(x, b, 1, "lrelu")))
            teb = time_ms(fb(lambda x, b: F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2) * math.sqrt(2)))
            print(f"{'fwd+bwd ' + str(dtype)[6:] + ' ' + layout:40s} {tfb:10.3f} {teb:9.3f} {'':8s} {teb / tfb:8.2f}")


def upfirdn2d_main():
    """upfirdn2d up=2, separable [1, 3, 3, 1], (8, 128, 64, 64): fastgan vs the reference
    (zero insertion + pad + depthwise conv2d, cuDNN) vs a copy of an output-sized tensor."""
    from fastgan.ops import setup_filter, upfirdn2d, upfirdn2d_ref

    f = setup_filter([1, 3, 3, 1], separable=True, device="cuda")
    shape = (8, 128, 64, 64)
    print(f"upfirdn2d up=2 [1,3,3,1] separable, shape {shape}")
    print(f"{'case':40s} {'fastgan ms':>10s} {'ref ms':>9s} {'copy ms':>8s} {'x ref':>8s}")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for layout in ("contiguous", "channels_last"):
            x = torch.randn(shape, device="cuda", dtype=dtype)
            if layout == "channels_last":
                x = x.to(memory_format=torch.channels_last)
            fg = lambda: upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4)  # noqa: E731
            ref = lambda: upfirdn2d_ref(x, f, up=2, padding=[2, 1, 2, 1], gain=4)  # noqa: E731
            torch.testing.assert_close(fg(), ref(), rtol=2e-2, atol=2e-2)
            y = fg()
            out = torch.empty_like(y)
            copy = lambda: out.copy_(y)  # noqa: E731
            tf, tr, tc = time_ms(fg), time_ms(ref), time_ms(copy)
            print(f"{'fwd ' + str(dtype)[6:] + ' ' + layout:40s} {tf:10.3f} {tr:9.3f} {tc:8.3f} {tr / tf:8.2f}")
            xg = x.detach().requires_grad_()
            gy = torch.randn_like(y)

            def fb(fn):
                def run():
                    fn(xg, f, up=2, padding=[2, 1, 2, 1], gain=4).backward(gy)
                return run

            tfb, trb = time_ms(fb(upfirdn2d)), time_ms(fb(upfirdn2d_ref))
            print(f"{'fwd+bwd ' + str(dtype)[6:] + ' ' + layout:40s} {tfb:10.3f} {trb:9.3f} {'':8s} {trb / tfb:8.2f}")
def upsample_block():
    """The fused upsampling block (8, 128, 32, 32) -> (8, 128, 64, 64), 3x3 weights."""
    from fastgan.ops import upsample_conv2d

    n, c, h, w = 8, 128, 32, 32
    f = torch.tensor([1.0, 3.0, 3.0, 1.0], device="cuda")
    f2d = (torch.outer(f, f) / 64 * 4).flip([0, 1])[None, None].expand(c, 1, 4, 4)

    def stock(x, wt, b):
        t = F.conv_transpose2d(x, wt.transpose(0, 1).flip([2, 3]), stride=2)
        t = F.conv2d(F.pad(t, [1, 1, 1, 1]), f2d.to(t.dtype), groups=c)
        return F.leaky_relu(t + b.view(1, -1, 1, 1), 0.2) * math.sqrt(2)

    print(f"{'upsample block':40s} {'fastgan ms':>10s} {'eager ms':>9s} {'x eager':>8s}")
    for dtype in (torch.float32, torch.float16):
        for layout in ("contiguous", "channels_last"):
            x = torch.randn(n, c, h, w, device="cuda", dtype=dtype)
            if layout == "channels_last":
                x = x.to(memory_format=torch.channels_last)
            wt = (torch.randn(c, c, 3, 3, device="cuda") / math.sqrt(c * 9)).to(dtype)
            b = torch.randn(c, device="cuda", dtype=dtype)
            torch.testing.assert_close(upsample_conv2d(x, wt, b), stock(x, wt, b), rtol=2e-2, atol=2e-2)
            tf = time_ms(lambda: upsample_conv2d(x, wt, b))
            te = time_ms(lambda: stock(x, wt, b))
            name = f"fwd {str(dtype)[6:]} {layout}"
            print(f"{name:40s} {tf:10.3f} {te:9.3f} {te / tf:8.2f}")
            xg, wg, bg = (t.detach().requires_grad_() for t in (x, wt, b))
            gy = torch.randn(n, c, 2 * h, 2 * w, device="cuda", dtype=dtype)

            def fb(fn):
                return lambda: torch.autograd.backward(fn(xg, wg, bg), gy)

            tf, te = time_ms(fb(upsample_conv2d)), time_ms(fb(stock))
            name = f"fwd+bwd {str(dtype)[6:]} {layout}"
            print(f"{name:40s} {tf:10.3f} {te:9.3f} {te / tf:8.2f}")


if __name__ == "__main__":
    main()
    upfirdn2d_main()
    upsample_block()
