// Included by the *_avx2.cpp kernel files that use at::vec, on x86-64 GCC/clang only (where
// dispatch.h sets FG_CPU_AVX2_KERNELS), before any header but dispatch.h, which declares only.
// torch.utils.cpp_extension compiles every C++ file with the same flags, so the file enables
// the instruction set itself (target pragma: it applies to the rest of the translation unit)
// and selects at::vec's AVX2 implementation, whose transcendental functions come from the
// Sleef library inside libtorch_cpu. GCC does not define the feature macros that headers
// (sleef.h, immintrin.h users) test under the pragma, so they are defined here.
#pragma once
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
// Vectorized<> returned by value in AVX registers: every caller is in the same file.
#pragma GCC diagnostic ignored "-Wpsabi"
