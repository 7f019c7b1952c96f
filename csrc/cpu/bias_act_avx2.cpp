// bias_act CPU kernels for AVX2 + FMA CPUs (avx2_target.h enables the instruction set).
// bias_act.cpp calls them only when dispatch.h's use_avx2 says so.
#include "dispatch.h"

// Defined before the target pragma: dispatch.cpp calls it on any CPU.
bool fastgan::cpu::bias_act_avx2_compiled() { return FG_CPU_AVX2_KERNELS; }

#if FG_CPU_AVX2_KERNELS
#include "avx2_target.h"
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
