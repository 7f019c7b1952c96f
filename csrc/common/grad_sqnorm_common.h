// Host-side pieces of fastgan::grad_sqnorm shared by the CPU and CUDA kernels: argument
// checks, the per-sample view of the input, and the fixed chunking that makes each
// kernel's reduction order (and so its result) independent of the number of threads.
// The CPU and CUDA kernels sum inside a chunk in different orders, so their results can
// differ in the last bits.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>

namespace fastgan {

// Each sample is reduced in chunks of this many elements; partial sums are then added in
// chunk order. Same constant on CPU and CUDA (the order inside a chunk differs).
inline constexpr int64_t kSqnormChunk = 16384;

struct SqnormPlan {
  at::Tensor x;      // dense, sample-major (contiguous or channels_last): sample n is the
                     // block [n * per_sample, (n + 1) * per_sample) of memory
  int64_t batch = 0;
  int64_t per_sample = 0;
  int64_t chunks_per_sample = 0;
  at::ScalarType out_dtype = at::kFloat;  // float64 for float64 input, else float32
};

inline SqnormPlan plan_sqnorm(const at::Tensor& grads) {
  const auto t = grads.scalar_type();
  TORCH_CHECK_TYPE(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16,
                   "grad_sqnorm: grads must be float32, float64, float16 or bfloat16, got ", t);
  TORCH_CHECK_VALUE(grads.dim() >= 1,
                    "grad_sqnorm: grads must have a batch dimension (dim >= 1), got a 0-d tensor");
  SqnormPlan p;
  const bool sample_major = grads.is_contiguous() ||
                            (grads.dim() == 4 && grads.is_contiguous(at::MemoryFormat::ChannelsLast)) ||
                            (grads.dim() == 5 && grads.is_contiguous(at::MemoryFormat::ChannelsLast3d));
  p.x = sample_major ? grads : grads.contiguous();
  p.batch = grads.size(0);
  p.per_sample = p.batch > 0 ? grads.numel() / p.batch : 0;
  p.chunks_per_sample = (p.per_sample + kSqnormChunk - 1) / kSqnormChunk;
  p.out_dtype = t == at::kDouble ? at::kDouble : at::kFloat;
  return p;
}

}  // namespace fastgan
