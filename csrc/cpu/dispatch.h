// The choice between the two compiled copies of the CPU kernels, baseline and AVX2, for
// every op that has both (<op>_default.cpp and <op>_avx2.cpp, compiled from the same
// <op>_kernel.h), in one place. The op files ask use_avx2(op); python_module.cpp reports
// isa_report().
#pragma once

#include <array>

// Whether the compiler can build the AVX2 copies: avx2_target.h's GCC target pragma needs
// GCC or clang on x86-64. Elsewhere each <op>_avx2.cpp forwards to the baseline copy.
// <op>_avx2.cpp includes this header before the pragma, so it holds declarations only.
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define FG_CPU_AVX2_KERNELS 1
#else
#define FG_CPU_AVX2_KERNELS 0
#endif

namespace fastgan::cpu {

// The ops with an AVX2 copy of their CPU kernels.
enum class IsaOp : int { BiasAct, BatchNormAct, FirBiasAct, Upfirdn2d };
inline constexpr int kNumIsaOps = 4;

// Whether op runs its AVX2 copy: the copy holds AVX2 code, set_kernel_choice has not
// turned it off, and the CPU capability ATen reports (which honours ATEN_CPU_CAPABILITY)
// is AVX2 or better.
bool use_avx2(IsaOp op);

struct OpIsa {
  const char* op;      // the op's name, as in fastgan::<op>
  bool avx2_compiled;  // its <op>_avx2.cpp holds AVX2 code (not the forwarding fallback)
  bool avx2_active;    // use_avx2(op) now
};
// Every op with two copies, in IsaOp order.
std::array<OpIsa, kNumIsaOps> isa_report();

// 0: auto; 1: the baseline copies; 2: the AVX2 copies where compiled and the CPU has AVX2
// (the same as auto unless ATEN_CPU_CAPABILITY lowered the capability). Tests switch it
// through fastgan._C._set_cpu_kernels.
void set_kernel_choice(int choice);

// Defined by each <op>_avx2.cpp: whether that file was compiled with AVX2 code, so the
// report says what each file holds.
bool bias_act_avx2_compiled();
bool batch_norm_act_avx2_compiled();
bool fir_bias_act_avx2_compiled();
bool upfirdn2d_avx2_compiled();

}  // namespace fastgan::cpu
