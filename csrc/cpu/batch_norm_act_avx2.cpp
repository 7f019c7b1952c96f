// batch_norm_act CPU kernels for AVX2 + FMA CPUs (avx2_target.h enables the instruction set);
// batch_norm_act.cpp calls them only when bias_act's ISA choice says AVX2 is active.
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#include "avx2_target.h"
#define FG_CPU_KERNEL_NS kernels_avx2
#include "batch_norm_act_kernel.h"
#else
#include "batch_norm_act_cpu.h"
namespace fastgan::cpu::kernels_avx2 {
void batch_norm_act_pass(const BnArgs& args) { kernels_default::batch_norm_act_pass(args); }
}  // namespace fastgan::cpu::kernels_avx2
#endif
