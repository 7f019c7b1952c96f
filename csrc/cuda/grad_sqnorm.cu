// CUDA kernel of fastgan::grad_sqnorm: per-sample sum of squares in one pass over grads.
//
// Deterministic: one block per fixed chunk of kSqnormChunk elements of one sample, a fixed
// reduction tree inside the block (warp shuffles, then the warp sums in order), and the
// chunk sums of a sample added in order by a second tiny kernel (skipped when a sample is
// a single chunk). No atomics, so the result is bitwise reproducible and matches across
// GPUs with the same chunking. Accumulation: float32 for half types and float32, float64
// for float64.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>

#include "../common/grad_sqnorm_common.h"

namespace fastgan::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

template <typename acc_t>
__device__ __forceinline__ acc_t block_sum(acc_t v) {
  __shared__ acc_t warp_sums[kWarps];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  acc_t s = 0;
  if (threadIdx.x == 0) {
#pragma unroll
    for (int w = 0; w < kWarps; ++w) s += warp_sums[w];
  }
  return s;  // valid in thread 0 only
}

// Block c reduces chunk (c % cps) of sample (c / cps) into out[c].
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    chunk_sumsq_kernel(const scalar_t* __restrict__ x, acc_t* __restrict__ out,
                       int64_t per_sample, int64_t cps) {
  const int64_t c = blockIdx.x;
  const int64_t n = c / cps, k = c % cps;
  const int64_t start = k * kSqnormChunk;
  const int64_t len = min(kSqnormChunk, per_sample - start);
  const scalar_t* p = x + n * per_sample + start;
  acc_t a0 = 0, a1 = 0;
  int64_t i = threadIdx.x;
  for (; i + kThreads < len; i += 2 * kThreads) {
    const acc_t v0 = static_cast<acc_t>(p[i]);
    const acc_t v1 = static_cast<acc_t>(p[i + kThreads]);
    a0 += v0 * v0;
    a1 += v1 * v1;
  }
  if (i < len) {
    const acc_t v = static_cast<acc_t>(p[i]);
    a0 += v * v;
  }
  const acc_t s = block_sum<acc_t>(a0 + a1);
  if (threadIdx.x == 0) out[c] = s;
}

template <typename acc_t>
__global__ void sum_chunks_kernel(const acc_t* __restrict__ part, acc_t* __restrict__ out,
                                  int64_t batch, int64_t cps) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= batch) return;
  acc_t s = 0;
  for (int64_t k = 0; k < cps; ++k) s += part[n * cps + k];
  out[n] = s;
}

at::Tensor grad_sqnorm_cuda(const at::Tensor& grads) {
  TORCH_CHECK(grads.is_cuda(), "grad_sqnorm: grads must be a CUDA tensor here, got ",
              grads.device());
  c10::cuda::OptionalCUDAGuard guard(grads.device());
  SqnormPlan plan = plan_sqnorm(grads);
  at::Tensor out = at::empty({plan.batch}, grads.options().dtype(plan.out_dtype));
  if (plan.batch == 0) return out;
  if (plan.per_sample == 0) return out.zero_();
  const int64_t cps = plan.chunks_per_sample;
  const int64_t total = plan.batch * cps;
  TORCH_CHECK(total < (int64_t{1} << 31), "grad_sqnorm: grads is too large (", grads.numel(),
              " elements)");
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.x.scalar_type(), "grad_sqnorm_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* x = plan.x.const_data_ptr<scalar_t>();
    if (cps == 1) {
      chunk_sumsq_kernel<scalar_t, acc_t><<<static_cast<unsigned>(total), kThreads, 0, stream>>>(
          x, out.mutable_data_ptr<acc_t>(), plan.per_sample, cps);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    at::Tensor part = at::empty({total}, out.options());
    chunk_sumsq_kernel<scalar_t, acc_t><<<static_cast<unsigned>(total), kThreads, 0, stream>>>(
        x, part.mutable_data_ptr<acc_t>(), plan.per_sample, cps);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const unsigned blocks = static_cast<unsigned>((plan.batch + 255) / 256);
    sum_chunks_kernel<acc_t><<<blocks, 256, 0, stream>>>(
        part.const_data_ptr<acc_t>(), out.mutable_data_ptr<acc_t>(), plan.batch, cps);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace fastgan::cuda

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("grad_sqnorm", &fastgan::cuda::grad_sqnorm_cuda);
}
