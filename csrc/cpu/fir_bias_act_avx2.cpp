// fir_bias_act CPU kernels for AVX2 + FMA CPUs: the same code as fir_bias_act_default.cpp,
// 8 floats wide (see bias_act_avx2.cpp for the target pragma and feature macros).
// fir_bias_act.cpp calls them only when the AVX2 kernel copy is active.
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#pragma GCC target("avx,avx2,fma,f16c")
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#ifndef __F16C__
#define __F16C__ 1
#endif
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#pragma GCC diagnostic ignored "-Wpsabi"
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
