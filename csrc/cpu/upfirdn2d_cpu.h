// Interface between the CPU op wrapper of upfirdn2d (upfirdn2d.cpp, which handles tensors)
// and its kernels, compiled once per instruction set (upfirdn2d_default.cpp,
// upfirdn2d_avx2.cpp) from upfirdn2d_kernel.h. Kernels see raw pointers and sizes only.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <vector>

namespace fastgan::cpu {

// The image batch is viewed as [batch, h, w, lanes], dense: NCHW is batch = N * C and
// lanes = 1; channels_last is batch = N and lanes = C.
struct UpfirdnArgs {
  c10::ScalarType dtype;
  int64_t batch = 0, lanes = 1;
  int64_t in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int64_t upx = 1, upy = 1, downx = 1, downy = 1;
  int64_t padx0 = 0, pady0 = 0;
  // Correlation taps (flip applied, gain folded in). separable: fx has fw taps (the x
  // pass, carrying the gain) and fy has fh taps; else fx is [fh, fw] row-major.
  bool separable = false;
  int64_t fw = 1, fh = 1;
  std::vector<double> fx, fy;
  const void* x = nullptr;
  void* y = nullptr;
};

#define FG_DECLARE_UPFIRDN_KERNELS(NS) \
  namespace NS {                       \
  void upfirdn2d(const UpfirdnArgs& a); \
  }

FG_DECLARE_UPFIRDN_KERNELS(kernels_default)
FG_DECLARE_UPFIRDN_KERNELS(kernels_avx2)

}  // namespace fastgan::cpu
