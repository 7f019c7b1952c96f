// CUDA kernel of fastgan::upfirdn2d. Argument checks, output size and layout, and the
// correlation taps are shared with the CPU op (common/upfirdn2d_common.h).
//
// One thread per output element. Along each axis only the taps that land on input samples
// are visited (polyphase: tap k of output o reads upsampled coordinate o * down - p0 + k,
// nonzero only when divisible by up), so zero insertion costs nothing. Separable filters
// read their x and y taps (fw + fh values), 2-D filters fh * fw; taps are tiny and stay in
// the read-only cache. Consecutive threads take consecutive elements of the output's
// memory order (w for NCHW, channels for channels_last), so loads and stores coalesce.
// Accumulation and taps are in float (double for float64: the taps are built in double
// from the float32 filter, as the CPU kernel does).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/flip.h>
#include <ATen/ops/mul.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../common/upfirdn2d_common.h"

namespace fastgan::cuda {
namespace {

struct Params {
  int64_t N, C, in_h, in_w, out_h, out_w;
  int upx, upy, downx, downy, padx0, pady0, fw, fh;
  int64_t total;
};

__device__ __forceinline__ int floor_mod(int a, int b) {
  const int r = a % b;
  return r < 0 ? r + b : r;
}

// taps (acc_t): separable: [fw] x taps (gain folded in) then [fh] y taps; 2-D: [fh, fw].
template <typename scalar_t, typename acc_t, bool SEPARABLE, bool CHANNELS_LAST>
__global__ void __launch_bounds__(256) upfirdn2d_kernel(const scalar_t* __restrict__ x,
                                                         scalar_t* __restrict__ y,
                                                         const acc_t* __restrict__ taps,
                                                         Params p) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < p.total;
       e += stride) {
    int64_t n, c, oy, ox;
    if (CHANNELS_LAST) {
      c = e % p.C;
      int64_t r = e / p.C;
      ox = r % p.out_w;
      r /= p.out_w;
      oy = r % p.out_h;
      n = r / p.out_h;
    } else {
      ox = e % p.out_w;
      int64_t r = e / p.out_w;
      oy = r % p.out_h;
      r /= p.out_h;
      c = r % p.C;
      n = r / p.C;
    }
    const int64_t sx = CHANNELS_LAST ? p.C : 1;
    const int64_t sy = sx * p.in_w;
    const int64_t base = CHANNELS_LAST ? (n * p.in_h * p.in_w * p.C + c)
                                       : ((n * p.C + c) * p.in_h * p.in_w);
    const int jy0 = static_cast<int>(oy * p.downy) - p.pady0;
    const int jx0 = static_cast<int>(ox * p.downx) - p.padx0;
    const int kx_first = floor_mod(-jx0, p.upx);
    acc_t sum = 0;
    for (int ky = floor_mod(-jy0, p.upy); ky < p.fh; ky += p.upy) {
      const int iy = (jy0 + ky) / p.upy;  // exact
      if (iy < 0 || iy >= p.in_h) continue;
      const scalar_t* row = x + base + iy * sy;
      acc_t rs = 0;
      const acc_t* tx = SEPARABLE ? taps : taps + ky * p.fw;
      for (int kx = kx_first; kx < p.fw; kx += p.upx) {
        const int ix = (jx0 + kx) / p.upx;
        if (ix < 0 || ix >= p.in_w) continue;
        rs += __ldg(tx + kx) * static_cast<acc_t>(row[ix * sx]);
      }
      sum += SEPARABLE ? __ldg(taps + p.fw + ky) * rs : rs;
    }
    y[e] = static_cast<scalar_t>(sum);
  }
}

at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy,
                          int64_t downx, int64_t downy, int64_t padx0, int64_t padx1,
                          int64_t pady0, int64_t pady1, bool flip, double gain) {
  const auto plan =
      fastgan::upfirdn2d_plan(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1);
  // The kernel's index arithmetic is 32-bit: every factor and the leading pads must stay
  // below 2^30. Checked directly (not only through products with the image size), since
  // an empty input can still have a non-empty padded output.
  constexpr int64_t kLimit = int64_t{1} << 30;
  TORCH_CHECK(upx >= 1 && upx < kLimit, "upfirdn2d: upx must be in [1, 2^30) on CUDA, got ", upx);
  TORCH_CHECK(upy >= 1 && upy < kLimit, "upfirdn2d: upy must be in [1, 2^30) on CUDA, got ", upy);
  TORCH_CHECK(downx >= 1 && downx < kLimit, "upfirdn2d: downx must be in [1, 2^30) on CUDA, got ",
              downx);
  TORCH_CHECK(downy >= 1 && downy < kLimit, "upfirdn2d: downy must be in [1, 2^30) on CUDA, got ",
              downy);
  TORCH_CHECK(padx0 > -kLimit && padx0 < kLimit,
              "upfirdn2d: padx0 must be in (-2^30, 2^30) on CUDA, got ", padx0);
  TORCH_CHECK(pady0 > -kLimit && pady0 < kLimit,
              "upfirdn2d: pady0 must be in (-2^30, 2^30) on CUDA, got ", pady0);
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  const auto fmt = plan.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor y = at::empty({x.size(0), x.size(1), plan.out_h, plan.out_w}, x.options().memory_format(fmt));
  if (y.numel() == 0) return y;
  TORCH_CHECK(x.size(2) * upy < kLimit && x.size(3) * upx < kLimit &&
                  plan.out_h * downy < kLimit && plan.out_w * downx < kLimit,
              "upfirdn2d: image size times up/down factors exceeds 2^30");
  const at::Tensor xc = x.contiguous(fmt);
  // Correlation taps on the device (no host sync): the contract's flip_filter=False is a
  // true convolution, so the filter is reversed along every axis unless flip. float64
  // inputs get float64 taps (the float32 filter widened, then scaled by gain in double).
  const bool dbl = x.scalar_type() == at::kDouble;
  const at::Tensor fa = dbl ? f.to(at::kDouble) : f;
  const at::Tensor fc = flip ? fa : (fa.dim() == 1 ? fa.flip({0}) : fa.flip({0, 1}));
  const at::Tensor taps = (fa.dim() == 1 ? at::cat({at::mul(fc, gain), fc}) : at::mul(fc, gain).reshape({-1}))
                              .contiguous();

  Params p;
  p.N = x.size(0);
  p.C = x.size(1);
  p.in_h = x.size(2);
  p.in_w = x.size(3);
  p.out_h = plan.out_h;
  p.out_w = plan.out_w;
  p.upx = static_cast<int>(upx);
  p.upy = static_cast<int>(upy);
  p.downx = static_cast<int>(downx);
  p.downy = static_cast<int>(downy);
  p.padx0 = static_cast<int>(padx0);
  p.pady0 = static_cast<int>(pady0);
  p.fw = static_cast<int>(plan.fw);
  p.fh = static_cast<int>(plan.fh);
  p.total = y.numel();
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((p.total + threads - 1) / threads, int64_t{1} << 20);
  auto stream = c10::cuda::getCurrentCUDAStream();
  const bool sep = f.dim() == 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d_cuda", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const acc_t* tp = taps.const_data_ptr<acc_t>();
    if (sep && plan.channels_last) {
      upfirdn2d_kernel<scalar_t, acc_t, true, true><<<blocks, threads, 0, stream>>>(xp, yp, tp, p);
    } else if (sep) {
      upfirdn2d_kernel<scalar_t, acc_t, true, false><<<blocks, threads, 0, stream>>>(xp, yp, tp, p);
    } else if (plan.channels_last) {
      upfirdn2d_kernel<scalar_t, acc_t, false, true><<<blocks, threads, 0, stream>>>(xp, yp, tp, p);
    } else {
      upfirdn2d_kernel<scalar_t, acc_t, false, false><<<blocks, threads, 0, stream>>>(xp, yp, tp, p);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

}  // namespace
}  // namespace fastgan::cuda

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) { m.impl("upfirdn2d", &fastgan::cuda::upfirdn2d_cuda); }
