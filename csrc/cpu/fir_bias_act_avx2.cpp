// fir_bias_act CPU kernels for AVX2 + FMA CPUs: the same code as fir_bias_act_default.cpp,
// 8 floats wide (avx2_target.h enables the instruction set).
// fir_bias_act.cpp calls them only when the AVX2 kernel copy is active.
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
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
