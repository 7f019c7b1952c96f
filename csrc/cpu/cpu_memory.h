// Output allocation advice for large CPU tensors.
//
// A fresh output of more than a few MB comes from mmap, and the first write to each 4 KiB
// page faults: on the 2-core benchmark machine a (32, 256, 64, 64) float32 output costs
// ~60 ms of page faults against ~14 ms to copy the same bytes into touched memory. Advising
// transparent huge pages for the output's range (Linux, THP mode "madvise") cuts the faults
// 512-fold. It changes nothing but the page size of memory this op owns; set
// FASTGAN_CPU_HUGEPAGES=0 to turn it off.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastgan::cpu {

inline bool huge_pages_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("FASTGAN_CPU_HUGEPAGES");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

// Call on a freshly allocated output before the kernel writes it.
inline void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (!t.defined() || !huge_pages_enabled()) return;
  const uintptr_t nbytes = static_cast<uintptr_t>(t.storage().nbytes());
  if (nbytes < 2 * kHuge) return;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.storage().data());
  const uintptr_t lo = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t hi = (begin + nbytes) & ~(kHuge - 1);
  if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);  // advice only
#else
  (void)t;
#endif
}

}  // namespace fastgan::cpu
