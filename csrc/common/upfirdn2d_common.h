// Host-side argument checks and filter preparation of upfirdn2d, shared by the CPU and
// CUDA wrappers, so that both validate and size outputs identically.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <vector>

namespace fastgan {

struct UpfirdnPlan {
  int64_t fw = 1, fh = 1;
  int64_t out_h = 0, out_w = 0;
  bool channels_last = false;  // output (and kernel) layout
};

inline UpfirdnPlan upfirdn2d_plan(const at::Tensor& x, const at::Tensor& f, int64_t upx,
                                  int64_t upy, int64_t downx, int64_t downy, int64_t padx0,
                                  int64_t padx1, int64_t pady0, int64_t pady1) {
  TORCH_CHECK_VALUE(x.dim() == 4, "upfirdn2d: x must be 4-D [N, C, H, W], got ", x.dim(), "-D");
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()) && x.scalar_type() != at::kFloat8_e4m3fn &&
                  x.scalar_type() != at::kFloat8_e5m2,
              "upfirdn2d: x must be float32, float64, float16 or bfloat16, got ", x.scalar_type());
  TORCH_CHECK_VALUE(f.dim() == 1 || f.dim() == 2, "upfirdn2d: f must be 1-D or 2-D, got ", f.dim(),
              "-D");
  TORCH_CHECK_TYPE(f.scalar_type() == at::kFloat, "upfirdn2d: f must be float32, got ",
              f.scalar_type());
  TORCH_CHECK_VALUE(f.numel() > 0, "upfirdn2d: f must not be empty");
  TORCH_CHECK_VALUE(f.device() == x.device(), "upfirdn2d: f is on ", f.device(), " but x is on ",
              x.device());
  TORCH_CHECK_VALUE(upx >= 1 && upy >= 1, "upfirdn2d: up must be >= 1, got [", upx, ", ", upy, "]");
  TORCH_CHECK_VALUE(downx >= 1 && downy >= 1, "upfirdn2d: down must be >= 1, got [", downx, ", ",
              downy, "]");
  UpfirdnPlan p;
  p.fw = f.size(-1);
  p.fh = f.size(0);
  TORCH_CHECK_VALUE(p.fw <= 1024 && p.fh <= 1024, "upfirdn2d: f has more than 1024 taps per axis");
  const int64_t span_h = x.size(2) * upy + pady0 + pady1 - p.fh;
  const int64_t span_w = x.size(3) * upx + padx0 + padx1 - p.fw;
  TORCH_CHECK_VALUE(span_h >= 0 && span_w >= 0, "upfirdn2d: padding [", padx0, ", ", padx1, ", ",
              pady0, ", ", pady1, "] crops everything: the padded image is smaller than the ",
              p.fw, "x", p.fh, " filter");
  p.out_h = span_h / downy + 1;
  p.out_w = span_w / downx + 1;
  p.channels_last =
      x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous(at::MemoryFormat::Contiguous);
  return p;
}

// The filter as correlation taps in double, row-major, scaled by gain: f flipped along
// every axis unless flip (the contract's flip_filter=False is a true convolution).
inline std::vector<double> correlation_taps(const at::Tensor& f, bool flip, double gain) {
  const at::Tensor fc = f.to(at::kCPU).contiguous();
  const float* p = fc.const_data_ptr<float>();
  const int64_t n = fc.numel();
  std::vector<double> taps(n);
  // Flipping every axis of a row-major array reverses it.
  for (int64_t i = 0; i < n; ++i) taps[i] = static_cast<double>(p[flip ? i : n - 1 - i]) * gain;
  return taps;
}

}  // namespace fastgan
