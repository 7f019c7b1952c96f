// batch_norm_act CPU kernels for AVX2 + FMA CPUs (avx2_target.h enables the instruction set);
// batch_norm_act.cpp calls them only when dispatch.h's use_avx2 says so.
#include "dispatch.h"

// Defined before the target pragma: dispatch.cpp calls it on any CPU.
bool fastgan::cpu::batch_norm_act_avx2_compiled() { return FG_CPU_AVX2_KERNELS; }

#if FG_CPU_AVX2_KERNELS
#include "avx2_target.h"
#define FG_CPU_KERNEL_NS kernels_avx2
#include "batch_norm_act_kernel.h"
#else
#include "batch_norm_act_cpu.h"
namespace fastgan::cpu::kernels_avx2 {
void batch_norm_act_pass(const BnArgs& args) { kernels_default::batch_norm_act_pass(args); }
}  // namespace fastgan::cpu::kernels_avx2
#endif
