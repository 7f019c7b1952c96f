// CPU implementation of fastgan::upfirdn2d: argument checks, layout and filter
// preparation; the loops are in upfirdn2d_kernel.h.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "../common/upfirdn2d_common.h"
#include "cpu_memory.h"
#include "dispatch.h"
#include "upfirdn2d_cpu.h"

namespace fastgan::cpu {

namespace {

// A 2-D filter that is an outer product (StyleGAN2-ADA's setup_filter makes every short 1-D
// filter 2-D, e.g. [1,3,3,1] -> 4x4) runs as two 1-D passes: fh + fw multiply-adds per
// output instead of fh * fw. Accepted only when the factors reproduce every tap to within
// float32 rounding of the largest tap (the filter is float32 data), so the result differs
// from the direct 2-D sum by rounding only. fx gets the row (with the overall scale), fy
// the column; both in correlation order, as the kernels take them.
bool split_rank1(const std::vector<double>& f2, int64_t fh, int64_t fw, std::vector<double>& fx,
                 std::vector<double>& fy) {
  int64_t i0 = 0, j0 = 0;
  double big = 0;
  for (int64_t i = 0; i < fh; ++i)
    for (int64_t j = 0; j < fw; ++j)
      if (std::abs(f2[i * fw + j]) > big) big = std::abs(f2[i * fw + j]), i0 = i, j0 = j;
  if (big == 0 || !std::isfinite(big)) return false;
  fx.assign(fw, 0.0);
  fy.assign(fh, 0.0);
  for (int64_t j = 0; j < fw; ++j) fx[j] = f2[i0 * fw + j];
  for (int64_t i = 0; i < fh; ++i) fy[i] = f2[i * fw + j0] / f2[i0 * fw + j0];
  const double tol = big * 0x1p-23;
  for (int64_t i = 0; i < fh; ++i)
    for (int64_t j = 0; j < fw; ++j)
      if (std::abs(fy[i] * fx[j] - f2[i * fw + j]) > tol) return false;
  return true;
}

at::Tensor upfirdn2d_cpu(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy,
                         int64_t downx, int64_t downy, int64_t padx0, int64_t padx1,
                         int64_t pady0, int64_t pady1, bool flip, double gain) {
  const auto plan = fastgan::upfirdn2d_plan(x, f, upx, upy, downx, downy, padx0, padx1, pady0,
                                            pady1);
  at::Tensor y = at::empty({x.size(0), x.size(1), plan.out_h, plan.out_w},
                           x.options().memory_format(plan.channels_last
                                                         ? at::MemoryFormat::ChannelsLast
                                                         : at::MemoryFormat::Contiguous));
  if (y.numel() == 0) return y;
  advise_huge_pages(y);
  const at::Tensor xc =
      x.contiguous(plan.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  UpfirdnArgs a;
  a.dtype = x.scalar_type();
  a.batch = plan.channels_last ? x.size(0) : x.size(0) * x.size(1);
  a.lanes = plan.channels_last ? x.size(1) : 1;
  a.in_h = x.size(2);
  a.in_w = x.size(3);
  a.out_h = plan.out_h;
  a.out_w = plan.out_w;
  a.upx = upx;
  a.upy = upy;
  a.downx = downx;
  a.downy = downy;
  a.padx0 = padx0;
  a.pady0 = pady0;
  a.separable = f.dim() == 1;
  a.fw = plan.fw;
  a.fh = plan.fh;
  a.fx = fastgan::correlation_taps(f, flip, gain);
  if (a.separable) {
    a.fy = fastgan::correlation_taps(f, flip, 1.0);
  } else if (plan.fh > 1 && plan.fw > 1) {
    std::vector<double> fx, fy;
    if (split_rank1(a.fx, plan.fh, plan.fw, fx, fy)) {
      a.separable = true;
      a.fx = std::move(fx);
      a.fy = std::move(fy);
    }
  }
  a.x = xc.const_data_ptr();
  a.y = y.mutable_data_ptr();
  if (use_avx2(IsaOp::Upfirdn2d)) {
    kernels_avx2::upfirdn2d(a);
  } else {
    kernels_default::upfirdn2d(a);
  }
  return y;
}

}  // namespace
}  // namespace fastgan::cpu

TORCH_LIBRARY_IMPL(fastgan, CPU, m) { m.impl("upfirdn2d", &fastgan::cpu::upfirdn2d_cpu); }
