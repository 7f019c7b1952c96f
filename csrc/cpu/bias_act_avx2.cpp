// bias_act CPU kernels for AVX2 + FMA CPUs. torch.utils.cpp_extension compiles every C++
// file with the same flags, so this file enables the instruction set itself (GCC/clang
// target pragma) and selects at::vec's AVX2 implementation, whose transcendental
// functions come from the Sleef library inside libtorch_cpu. bias_act.cpp calls these
// kernels only when at::get_cpu_capability() reports AVX2 or better.
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#pragma GCC target("avx,avx2,fma,f16c")
// The pragma enables code generation but GCC does not define the feature macros that
// headers (sleef.h, immintrin.h users) test, so define them for this file.
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
#define FG_HAVE_AVX2_KERNELS 1
#endif

#ifdef FG_HAVE_AVX2_KERNELS
// Vectorized<> returned by value in AVX registers: every caller is in this file.
#pragma GCC diagnostic ignored "-Wpsabi"
#define FG_CPU_KERNEL_NS kernels_avx2
#include "bias_act_kernel.h"
#else
#include "bias_act_cpu.h"
// Not an x86-64 GCC/clang build: the AVX2 entry points forward to the baseline kernels.
namespace fastgan::cpu::kernels_avx2 {
void bias_act_forward(const ForwardArgs& args) { kernels_default::bias_act_forward(args); }
void bias_act_grad(const GradArgs& args) { kernels_default::bias_act_grad(args); }
}  // namespace fastgan::cpu::kernels_avx2
#endif

namespace fastgan::cpu {
bool avx2_kernels_compiled() {
#ifdef FG_HAVE_AVX2_KERNELS
  return true;
#else
  return false;
#endif
}
}  // namespace fastgan::cpu
