"""CUDA timing of the gradient-penalty steps (fastgan vs naive, same weights; CUDA events,
warm-up excluded, medians) and of grad_sqnorm vs the stock per-sample norm. Used by
gpu_check.sh."""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import cuda_bench  # noqa: E402  (time_ms: CUDA events, median)
from test_bench_penalties import FastCritic, NaiveCritic, _res_d  # noqa: E402

from fastgan.losses import r1_penalty, r1_penalty_naive, wgan_gp_penalty, wgan_gp_penalty_naive  # noqa: E402


def time_ms(fn, reps=20):
    return cuda_bench.time_ms(fn, reps)


def main():
    print(f"device: {torch.cuda.get_device_name()}")
    g = torch.randn(64, 3, 64, 64, device="cuda")
    tf = time_ms(lambda: torch.ops.fastgan.grad_sqnorm(g), 100)
    tn = time_ms(lambda: g.flatten(1).square().sum(1), 100)
    print(f"{'grad_sqnorm (64,3,64,64) fp32':40s} fastgan {tf:8.3f} ms  stock {tn:8.3f} ms  x{tn / tf:5.2f}")
    torch.manual_seed(0)
    for layout in ("contiguous", "channels_last"):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        # the StyleGAN2-style discriminator of the CPU bench (test_r1_step), same weights
        fast, naive = _res_d("fastgan"), _res_d("stock")
        naive.load_state_dict(fast.state_dict())
        fast, naive = fast.cuda().to(memory_format=fmt), naive.cuda().to(memory_format=fmt)
        x = torch.randn(16, 3, 64, 64, device="cuda").contiguous(memory_format=fmt)
        torch.testing.assert_close(r1_penalty(fast, x, 10.0), r1_penalty_naive(naive, x, 10.0), rtol=1e-3, atol=1e-5)

        def r1(D, pen):
            def run():
                D.zero_grad(set_to_none=True)
                pen(D, x, 10.0).backward()
            return run

        tf, tn = time_ms(r1(fast, r1_penalty)), time_ms(r1(naive, r1_penalty_naive))
        print(f"{'R1 step b16 ' + layout:40s} fastgan {tf:8.3f} ms  naive {tn:8.3f} ms  x{tn / tf:5.2f}")
        fc, nc = FastCritic().cuda(), NaiveCritic().cuda()
        nc.load_state_dict(fc.state_dict())
        fc, nc = fc.to(memory_format=fmt), nc.to(memory_format=fmt)
        real = torch.randn(64, 3, 64, 64, device="cuda").contiguous(memory_format=fmt)
        fake = torch.randn_like(real)
        eps = torch.rand(64, device="cuda")

        def gp(D, pen):
            def run():
                D.zero_grad(set_to_none=True)
                (D(fake).mean() - D(real).mean() + pen(D, real, fake, 10.0, eps=eps)).backward()
            return run

        tf, tn = time_ms(gp(fc, wgan_gp_penalty)), time_ms(gp(nc, wgan_gp_penalty_naive))
        print(f"{'WGAN-GP critic step b64 ' + layout:40s} fastgan {tf:8.3f} ms  naive {tn:8.3f} ms  x{tn / tf:5.2f}")


if __name__ == "__main__":
    main()
