// upfirdn2d CPU kernels for AVX2 + FMA CPUs: the same loops as upfirdn2d_default.cpp,
// auto-vectorized 8 floats wide (see bias_act_avx2.cpp for why the target pragma).
// upfirdn2d.cpp calls them only when the AVX2 kernel copy is active.
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#pragma GCC target("avx,avx2,fma,f16c")
#define FG_CPU_KERNEL_NS kernels_avx2
#include "upfirdn2d_kernel.h"
#else
#include "upfirdn2d_cpu.h"
namespace fastgan::cpu::kernels_avx2 {
void upfirdn2d(const UpfirdnArgs& a) { kernels_default::upfirdn2d(a); }
}  // namespace fastgan::cpu::kernels_avx2
#endif
