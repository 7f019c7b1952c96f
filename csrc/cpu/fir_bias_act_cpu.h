// Interface between the CPU op wrappers of fir_bias_act (fir_bias_act.cpp) and their
// kernels, compiled once per instruction set (fir_bias_act_default.cpp,
// fir_bias_act_avx2.cpp) from fir_bias_act_kernel.h.
#pragma once

#include "../common/fir_bias_act_common.h"

#define FG_DECLARE_FIR_KERNELS(NS)                                             \
  namespace NS {                                                               \
  void fir_forward(FirForwardPlan& plan, double alpha, double gain, double clamp); \
  void fir_grad(FirGradPlan& plan, double alpha, double gain, double clamp);   \
  }

namespace fastgan::cpu {
FG_DECLARE_FIR_KERNELS(kernels_default)
FG_DECLARE_FIR_KERNELS(kernels_avx2)
}  // namespace fastgan::cpu
