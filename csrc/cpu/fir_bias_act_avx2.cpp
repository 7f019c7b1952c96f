// fir_bias_act CPU kernels for AVX2 + FMA CPUs: the same code as fir_bias_act_default.cpp,
// 8 floats wide (avx2_target.h enables the instruction set).
// fir_bias_act.cpp calls them only when dispatch.h's use_avx2 says so.
#include "dispatch.h"

// Defined before the target pragma: dispatch.cpp calls it on any CPU.
bool fastgan::cpu::fir_bias_act_avx2_compiled() { return FG_CPU_AVX2_KERNELS; }

#if FG_CPU_AVX2_KERNELS
#include "avx2_target.h"
#define FG_CPU_KERNEL_NS kernels_avx2
#include "fir_bias_act_kernel.h"
#else
#include "fir_bias_act_cpu.h"
namespace fastgan::cpu::kernels_avx2 {
void fir_forward(FirForwardPlan& plan, double alpha, double gain, double clamp) {
  kernels_default::fir_forward(plan, alpha, gain, clamp);
}
void fir_grad(FirGradPlan& plan, double alpha, double gain, double clamp) {
  kernels_default::fir_grad(plan, alpha, gain, clamp);
}
}  // namespace fastgan::cpu::kernels_avx2
#endif
