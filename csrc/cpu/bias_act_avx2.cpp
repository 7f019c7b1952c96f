// bias_act CPU kernels for AVX2 + FMA CPUs (avx2_target.h enables the instruction set).
// bias_act.cpp calls these kernels only when at::get_cpu_capability() reports AVX2 or better.
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#include "avx2_target.h"
#define FG_HAVE_AVX2_KERNELS 1
#endif

#ifdef FG_HAVE_AVX2_KERNELS
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
