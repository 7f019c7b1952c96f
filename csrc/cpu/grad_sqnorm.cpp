// CPU kernel of fastgan::grad_sqnorm: per-sample sum of squares in one pass.
//
// Work is split into fixed chunks of kSqnormChunk elements of one sample (so a batch of
// many small samples and a batch of a few huge ones both keep every thread busy); each
// chunk's partial sum is written to its own slot and the slots of a sample are added in
// order afterwards, so the result does not depend on the number of threads.
// Accumulation: float32 for float32/float16/bfloat16, float64 for float64.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../common/grad_sqnorm_common.h"

namespace fastgan::cpu {
namespace {

// bfloat16 -> float is the 16 bits moved to the top of a float: written as integer code the
// compiler vectorizes it (c10::BFloat16's conversion operator is not), so bf16 gradients
// are read in blocks converted into a float scratch, then summed like float32 ones. The
// lane assignment of the sums is the same, so results do not depend on the path.
inline void bf16_to_float(const c10::BFloat16* src, float* dst, int64_t n) {
  const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
  uint32_t* d = reinterpret_cast<uint32_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = static_cast<uint32_t>(s[i]) << 16;
}

// Sum of squares of n elements. kLanes independent accumulators: the compiler turns the
// inner loop into SIMD multiply-adds without reassociating any single accumulator, so the
// result is the same with and without vectorization.
template <typename scalar_t, typename acc_t>
acc_t sumsq(const scalar_t* p, int64_t n) {
  constexpr int kLanes = 16;
  acc_t acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const acc_t v = static_cast<acc_t>(p[i + j]);
      acc[j] += v * v;
    }
  }
  for (int j = 0; i < n; ++i, ++j) {
    const acc_t v = static_cast<acc_t>(p[i]);
    acc[j] += v * v;
  }
  // fixed pairwise tree
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  return acc[0];
}

// bfloat16: the same 16 lanes and tree, over blocks converted to float. Every block but the
// last has a multiple of 16 elements, so each element lands in the lane it would above.
template <>
float sumsq<c10::BFloat16, float>(const c10::BFloat16* p, int64_t n) {
  constexpr int kLanes = 16;
  constexpr int64_t kBlock = 1024;
  float buf[kBlock];
  float acc[kLanes] = {};
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t len = std::min(kBlock, n - start);
    bf16_to_float(p + start, buf, len);
    int64_t i = 0;
    for (; i + kLanes <= len; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) acc[j] += buf[i + j] * buf[i + j];
    }
    for (int j = 0; i < len; ++i, ++j) acc[j] += buf[i] * buf[i];
  }
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  return acc[0];
}

at::Tensor grad_sqnorm_cpu(const at::Tensor& grads) {
  TORCH_CHECK(grads.device().is_cpu(), "grad_sqnorm: grads must be a CPU tensor here, got ",
              grads.device());
  SqnormPlan plan = plan_sqnorm(grads);
  at::Tensor out = at::empty({plan.batch}, grads.options().dtype(plan.out_dtype));
  if (plan.batch == 0) return out;
  if (plan.per_sample == 0) return out.zero_();
  const int64_t cps = plan.chunks_per_sample;
  const int64_t total = plan.batch * cps;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.x.scalar_type(), "grad_sqnorm_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const scalar_t* x = plan.x.const_data_ptr<scalar_t>();
    acc_t* o = out.mutable_data_ptr<acc_t>();
    const int64_t m = plan.per_sample;
    if (cps == 1) {
      at::parallel_for(0, plan.batch, 4, [&](int64_t b, int64_t e) {
        for (int64_t n = b; n < e; ++n) o[n] = sumsq<scalar_t, acc_t>(x + n * m, m);
      });
      return;
    }
    std::vector<acc_t> part(static_cast<size_t>(total));
    at::parallel_for(0, total, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) {
        const int64_t n = c / cps, k = c % cps;
        const int64_t start = k * kSqnormChunk;
        const int64_t len = std::min(kSqnormChunk, m - start);
        part[c] = sumsq<scalar_t, acc_t>(x + n * m + start, len);
      }
    });
    for (int64_t n = 0; n < plan.batch; ++n) {
      acc_t s = 0;
      for (int64_t k = 0; k < cps; ++k) s += part[n * cps + k];
      o[n] = s;
    }
  });
  return out;
}

}  // namespace
}  // namespace fastgan::cpu

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("grad_sqnorm", &fastgan::cpu::grad_sqnorm_cpu);
}
