// upfirdn2d CPU kernels for AVX2 + FMA CPUs: the same loops as upfirdn2d_default.cpp,
// auto-vectorized 8 floats wide (see avx2_target.h for why the target pragma; at::vec is
// not used here, so the pragma alone).
// upfirdn2d.cpp calls them only when dispatch.h's use_avx2 says so.
#include "dispatch.h"

// Defined before the target pragma: dispatch.cpp calls it on any CPU.
bool fastgan::cpu::upfirdn2d_avx2_compiled() { return FG_CPU_AVX2_KERNELS; }

#if FG_CPU_AVX2_KERNELS
#pragma GCC target("avx,avx2,fma,f16c")
#define FG_CPU_KERNEL_NS kernels_avx2
#include "upfirdn2d_kernel.h"
#else
#include "upfirdn2d_cpu.h"
namespace fastgan::cpu::kernels_avx2 {
void upfirdn2d(const UpfirdnArgs& a) { kernels_default::upfirdn2d(a); }
}  // namespace fastgan::cpu::kernels_avx2
#endif
