// CUDA kernels of fastgan::bias_act and fastgan::bias_act_grad. Argument checks, dense
// layouts and output allocation are shared with the CPU op (common/bias_act_common.h);
// the per-element math is common/activations.h, so CPU and CUDA compute the same formulas.
//
// The tensor is processed in memory order as [outer, C, inner]: flat element i belongs to
// channel (i / inner) % C. Half types compute in float, double in double.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContextLight.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "../common/bias_act_common.h"

namespace fastgan::cuda {
namespace {

using at::cuda::detail::IntDivider;

template <typename scalar_t>
using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// Elements per 16-byte access: 4 floats, 2 doubles, 8 halves.
template <typename scalar_t>
constexpr int kVec = 16 / static_cast<int>(sizeof(scalar_t));

// Columns per thread in the matrix-mode reduction: 16 bytes, but at most 4 (8 bytes for
// half types), which keeps 8-lane half types free of register spills.
template <typename scalar_t>
constexpr int kColVec = kVec<scalar_t> < 4 ? kVec<scalar_t> : 4;

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Reduction tiling. Fixed numbers (not derived from the device), so that the kernels'
// partial sums depend on the shape only. The at::sum that finishes them chooses its own
// split, which can depend on the GPU (its number of SMs): results are bitwise
// reproducible from run to run on one GPU model, not promised equal across models.
constexpr int64_t kMinRowLen = 64;  // inner >= this: one partial per row segment
constexpr int kSegLen = 2048;       // row segment per warp; a multiple of 32 * kVec
constexpr int kRowThreads = kThreads / 32;  // matrix mode: block is 32 columns x 8 rows
constexpr int kChunkRows = 64;              // matrix mode: rows per partial

// Channel lookup for the elementwise kernels: fast magic-number division for 32-bit
// indices, plain division for 64-bit ones.
template <typename index_t>
struct ChannelMap {
  IntDivider<index_t> div_inner, div_channels;
  index_t inner, channels;
};

// Biases of the N consecutive elements starting at flat index i. One division pair per
// call; lanes that cross a row boundary (small inner, e.g. channels_last) walk on.
template <int N, typename A, typename scalar_t, typename index_t>
__device__ __forceinline__ void load_bias(const scalar_t* __restrict__ b, index_t i,
                                          const ChannelMap<index_t>& m, A (&out)[N]) {
  const auto q = m.div_inner.divmod(i);
  index_t pos = q.mod;
  index_t c = m.div_channels.mod(q.div);
  if (pos + N <= m.inner) {
    const A bc = static_cast<A>(b[c]);
#pragma unroll
    for (int k = 0; k < N; ++k) out[k] = bc;
  } else {
#pragma unroll
    for (int k = 0; k < N; ++k) {
      out[k] = static_cast<A>(b[c]);
      if (++pos == m.inner) {
        pos = 0;
        if (++c == m.channels) c = 0;
      }
    }
  }
}

template <typename T>
bool aligned16(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

int elementwise_blocks(int64_t work) {
  const cudaDeviceProp* prop = at::cuda::getCurrentDeviceProperties();
  const int64_t resident = static_cast<int64_t>(prop->multiProcessorCount) *
                           (prop->maxThreadsPerMultiProcessor / kThreads);
  const int64_t needed = (std::max<int64_t>(work, 1) + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min(needed, resident)));
}

// ----------------------------------------------------------------------------------------
// Elementwise kernels (forward, and grad without reduction). Grid-stride over 16-byte
// vectors when `nvec` > 0 (pointers aligned), then scalars for the rest.

template <Act kAct, typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
                   scalar_t* __restrict__ y, index_t numel, index_t nvec, ChannelMap<index_t> m,
                   ActParams<acc_t<scalar_t>> p) {
  using A = acc_t<scalar_t>;
  constexpr int N = kVec<scalar_t>;
  using P = Pack<scalar_t, N>;
  const index_t tid = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t v = tid; v < nvec; v += stride) {
    A bl[N];
    if (b) {
      load_bias<N>(b, v * N, m, bl);
    } else {
#pragma unroll
      for (int k = 0; k < N; ++k) bl[k] = A(0);
    }
    const P in = reinterpret_cast<const P*>(x)[v];
    P o;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const A z = static_cast<A>(in.v[k]) + bl[k];
      o.v[k] = static_cast<scalar_t>(
          bias_act_forward_elem<kAct>(z, p.alpha, p.gain, p.clamp, p.has_clamp));
    }
    reinterpret_cast<P*>(y)[v] = o;
  }
  for (index_t i = nvec * N + tid; i < numel; i += stride) {
    A z = static_cast<A>(x[i]);
    if (b) z += static_cast<A>(b[m.div_channels.mod(m.div_inner.div(i))]);
    y[i] = static_cast<scalar_t>(
        bias_act_forward_elem<kAct>(z, p.alpha, p.gain, p.clamp, p.has_clamp));
  }
}

// out = g * factor(ref (+ b)). b is null when absent or when ref is y.
template <Act kAct, typename A>
__device__ __forceinline__ A grad_elem(A g, A r, const ActParams<A>& p, bool ref_is_y,
                                       int order) {
  return g * bias_act_grad_factor<kAct>(r, p.alpha, p.gain, p.inv_gain, p.clamp,
                                        p.has_clamp, ref_is_y, order);
}

template <Act kAct, typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    grad_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ ref,
                const scalar_t* __restrict__ b, scalar_t* __restrict__ out, index_t numel,
                index_t nvec, ChannelMap<index_t> m, ActParams<acc_t<scalar_t>> p, bool ref_is_y,
                int order) {
  using A = acc_t<scalar_t>;
  constexpr int N = kVec<scalar_t>;
  using P = Pack<scalar_t, N>;
  const index_t tid = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t v = tid; v < nvec; v += stride) {
    A bl[N];
    if (b) {
      load_bias<N>(b, v * N, m, bl);
    } else {
#pragma unroll
      for (int k = 0; k < N; ++k) bl[k] = A(0);
    }
    const P gv = reinterpret_cast<const P*>(g)[v];
    const P rv = reinterpret_cast<const P*>(ref)[v];
    P o;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const A r = static_cast<A>(rv.v[k]) + bl[k];
      o.v[k] = static_cast<scalar_t>(
          grad_elem<kAct>(static_cast<A>(gv.v[k]), r, p, ref_is_y, order));
    }
    reinterpret_cast<P*>(out)[v] = o;
  }
  for (index_t i = nvec * N + tid; i < numel; i += stride) {
    A r = static_cast<A>(ref[i]);
    if (b) r += static_cast<A>(b[m.div_channels.mod(m.div_inner.div(i))]);
    out[i] =
        static_cast<scalar_t>(grad_elem<kAct>(static_cast<A>(g[i]), r, p, ref_is_y, order));
  }
}

// ----------------------------------------------------------------------------------------
// Grad with the per-channel sum, deterministic (no atomics): kernels write partial sums in
// a fixed order, a small at::sum finishes.

// Row mode (inner >= kMinRowLen): row = o * C + c holds `inner` elements of channel c. Each
// warp takes one segment of kSegLen elements of a row, reduces it with shuffles and writes
// partial[row * nseg + seg]. `vec`: inner % kVec == 0 and pointers aligned, so every
// segment starts on a 16-byte boundary and is a whole number of vectors.
template <Act kAct, typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    grad_rows_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ ref,
                     const scalar_t* __restrict__ b, scalar_t* __restrict__ out,
                     acc_t<scalar_t>* __restrict__ partial, uint32_t items, uint32_t nseg,
                     int64_t inner, uint32_t channels, bool vec, ActParams<acc_t<scalar_t>> p,
                     bool ref_is_y, int order) {
  using A = acc_t<scalar_t>;
  constexpr int N = kVec<scalar_t>;
  using P = Pack<scalar_t, N>;
  const int lane = threadIdx.x & 31;
  // 32-bit item arithmetic (the host checks items < 2^31): 64-bit division is a
  // subroutine call, and its register saves show up as spills.
  const uint32_t item = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (item >= items) return;  // uniform per warp: the shuffles below see full warps
  const uint32_t row = item / nseg;
  const int64_t seg_start = static_cast<int64_t>(item - row * nseg) * kSegLen;
  const int len = static_cast<int>(std::min<int64_t>(kSegLen, inner - seg_start));
  const int64_t base = static_cast<int64_t>(row) * inner + seg_start;
  g += base;
  ref += base;
  out += base;
  const A bias = b ? static_cast<A>(b[row % channels]) : A(0);
  A sum = A(0);
  int j0 = 0;
  if (vec) {
    const int nv = len / N;
    for (int v = lane; v < nv; v += 32) {
      const P gv = reinterpret_cast<const P*>(g)[v];
      const P rv = reinterpret_cast<const P*>(ref)[v];
      P o;
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const A val =
            grad_elem<kAct>(static_cast<A>(gv.v[k]), static_cast<A>(rv.v[k]) + bias, p,
                            ref_is_y, order);
        o.v[k] = static_cast<scalar_t>(val);
        sum += val;
      }
      reinterpret_cast<P*>(out)[v] = o;
    }
    j0 = nv * N;
  }
  for (int j = j0 + lane; j < len; j += 32) {
    const A val = grad_elem<kAct>(static_cast<A>(g[j]), static_cast<A>(ref[j]) + bias, p,
                                  ref_is_y, order);
    out[j] = static_cast<scalar_t>(val);
    sum += val;
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, off);
  if (lane == 0) partial[item] = sum;
}

// Matrix mode (small inner, e.g. channels_last where inner == 1): the tensor is a
// [rows, width] matrix, width = C * inner, column col in channel col / inner. A block
// (32 x 8 threads) covers a tile of 32 * kColVec columns (kColVec consecutive columns per
// thread, coalesced); for each chunk of kChunkRows rows it sums its columns and writes
// partial[chunk * width + col]. Blocks loop over chunks (gridDim.y is capped at 65535).
// `vec`: width % kColVec == 0 and pointers aligned to kColVec elements. The host checks
// width < 2^31 so that column arithmetic stays 32-bit (64-bit division is a call).
// No __launch_bounds__ here: with it ptxas trades a few spills for occupancy.
template <Act kAct, typename scalar_t>
__global__ void grad_cols_kernel(const scalar_t* __restrict__ g,
                                 const scalar_t* __restrict__ ref,
                                 const scalar_t* __restrict__ b, scalar_t* __restrict__ out,
                                 acc_t<scalar_t>* __restrict__ partial, int64_t rows,
                                 uint32_t nchunks, uint32_t width, uint32_t inner, bool vec,
                                 ActParams<acc_t<scalar_t>> p, bool ref_is_y, int order) {
  using A = acc_t<scalar_t>;
  constexpr int N = kColVec<scalar_t>;
  constexpr int kTileCols = 32 * N;
  using P = Pack<scalar_t, N>;
  __shared__ A tile_sums[kRowThreads][kTileCols];

  const int tx = threadIdx.x, ty = threadIdx.y;
  const uint32_t tile_col0 = blockIdx.x * kTileCols;
  const uint32_t col0 = tile_col0 + tx * N;  // this thread's first column
  A bias[N];
#pragma unroll
  for (int k = 0; k < N; ++k) {
    const uint32_t col = col0 + k;
    bias[k] = (b && col < width) ? static_cast<A>(b[col / inner]) : A(0);
  }
  for (uint32_t chunk = blockIdx.y; chunk < nchunks; chunk += gridDim.y) {
    A acc[N];
#pragma unroll
    for (int k = 0; k < N; ++k) acc[k] = A(0);
    if (col0 < width) {
      const int64_t row0 = static_cast<int64_t>(chunk) * kChunkRows;
      const int64_t left = rows - row0;
      const int n = left < kChunkRows ? static_cast<int>(left) : kChunkRows;
      const int64_t step = static_cast<int64_t>(kRowThreads) * width;
      int64_t off = (row0 + ty) * width + col0;
      for (int i = ty; i < n; i += kRowThreads, off += step) {
        if (vec) {  // width % N == 0, so all N columns exist
          const P gv = *reinterpret_cast<const P*>(g + off);
          const P rv = *reinterpret_cast<const P*>(ref + off);
          P o;
#pragma unroll
          for (int k = 0; k < N; ++k) {
            const A val = grad_elem<kAct>(static_cast<A>(gv.v[k]),
                                          static_cast<A>(rv.v[k]) + bias[k], p, ref_is_y,
                                          order);
            o.v[k] = static_cast<scalar_t>(val);
            acc[k] += val;
          }
          *reinterpret_cast<P*>(out + off) = o;
        } else {
#pragma unroll
          for (int k = 0; k < N; ++k) {
            if (col0 + k < width) {
              const A val = grad_elem<kAct>(static_cast<A>(g[off + k]),
                                            static_cast<A>(ref[off + k]) + bias[k], p,
                                            ref_is_y, order);
              out[off + k] = static_cast<scalar_t>(val);
              acc[k] += val;
            }
          }
        }
      }
    }
#pragma unroll
    for (int k = 0; k < N; ++k) tile_sums[ty][tx * N + k] = acc[k];
    __syncthreads();
    const int t = ty * 32 + tx;  // kTileCols <= kThreads: one thread per tile column
    if (t < kTileCols && tile_col0 + t < width) {
      A s = A(0);
#pragma unroll
      for (int y = 0; y < kRowThreads; ++y) s += tile_sums[y][t];
      partial[static_cast<int64_t>(chunk) * width + tile_col0 + t] = s;
    }
    __syncthreads();  // tile_sums is rewritten by the next chunk
  }
}

// ----------------------------------------------------------------------------------------
// Launchers.

template <typename index_t>
ChannelMap<index_t> channel_map(const DenseLayout& l) {
  ChannelMap<index_t> m;
  m.inner = static_cast<index_t>(l.inner);
  m.channels = static_cast<index_t>(l.channels);
  m.div_inner = IntDivider<index_t>(m.inner);
  m.div_channels = IntDivider<index_t>(m.channels);
  return m;
}

template <Act kAct, typename scalar_t, typename index_t>
void launch_forward(const scalar_t* x, const scalar_t* b, scalar_t* y, const DenseLayout& l,
                    const ActParams<acc_t<scalar_t>>& p) {
  constexpr int N = kVec<scalar_t>;
  const int64_t nvec = (aligned16(x) && aligned16(y)) ? l.numel / N : 0;
  const int blocks = elementwise_blocks(nvec > 0 ? nvec : l.numel);
  forward_kernel<kAct, scalar_t, index_t>
      <<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          x, b, y, static_cast<index_t>(l.numel), static_cast<index_t>(nvec),
          channel_map<index_t>(l), p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <Act kAct, typename scalar_t, typename index_t>
void launch_grad(const scalar_t* g, const scalar_t* ref, const scalar_t* b, scalar_t* out,
                 const DenseLayout& l, const ActParams<acc_t<scalar_t>>& p, bool ref_is_y,
                 int order) {
  constexpr int N = kVec<scalar_t>;
  const int64_t nvec = (aligned16(g) && aligned16(ref) && aligned16(out)) ? l.numel / N : 0;
  const int blocks = elementwise_blocks(nvec > 0 ? nvec : l.numel);
  grad_kernel<kAct, scalar_t, index_t>
      <<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          g, ref, b, out, static_cast<index_t>(l.numel), static_cast<index_t>(nvec),
          channel_map<index_t>(l), p, ref_is_y, order);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Runs a reducing grad kernel; returns the per-channel sums in the accumulation type.
template <Act kAct, typename scalar_t>
at::Tensor launch_grad_reduce(const scalar_t* g, const scalar_t* ref, const scalar_t* b,
                              scalar_t* out, const DenseLayout& l,
                              const ActParams<acc_t<scalar_t>>& p, bool ref_is_y, int order,
                              const at::TensorOptions& acc_opts) {
  using A = acc_t<scalar_t>;
  constexpr int N = kVec<scalar_t>;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  if (l.inner >= kMinRowLen) {
    const bool aligned = aligned16(g) && aligned16(ref) && aligned16(out);
    const int64_t rows = l.outer * l.channels;
    const int64_t nseg = (l.inner + kSegLen - 1) / kSegLen;
    const int64_t items = rows * nseg;
    TORCH_CHECK(items <= std::numeric_limits<int32_t>::max(),
                "bias_act_grad: tensor too large for the CUDA reduction (", items,
                " row segments)");
    at::Tensor partial = at::empty({items}, acc_opts);
    const int blocks = static_cast<int>((items + kWarps - 1) / kWarps);
    grad_rows_kernel<kAct, scalar_t><<<blocks, kThreads, 0, stream>>>(
        g, ref, b, out, partial.mutable_data_ptr<A>(), static_cast<uint32_t>(items),
        static_cast<uint32_t>(nseg), l.inner, static_cast<uint32_t>(l.channels),
        aligned && l.inner % N == 0, p, ref_is_y, order);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor per_row = nseg == 1 ? partial : partial.view({rows, nseg}).sum(1);
    return reduce_partial_sums(per_row, l, /*vec_mode=*/false);
  }
  constexpr int NC = kColVec<scalar_t>;
  constexpr uintptr_t kColBytes = NC * sizeof(scalar_t);
  const bool aligned_cols = reinterpret_cast<uintptr_t>(g) % kColBytes == 0 &&
                            reinterpret_cast<uintptr_t>(ref) % kColBytes == 0 &&
                            reinterpret_cast<uintptr_t>(out) % kColBytes == 0;
  const int64_t width = l.channels * l.inner;
  TORCH_CHECK(width <= std::numeric_limits<int32_t>::max(),
              "bias_act_grad: too many channels for the CUDA reduction (", l.channels, ")");
  const int64_t ntiles = (width + 32 * NC - 1) / (32 * NC);
  const int64_t nchunks = (l.outer + kChunkRows - 1) / kChunkRows;
  at::Tensor partial = at::empty({nchunks, width}, acc_opts);
  const dim3 grid(static_cast<unsigned>(ntiles),
                  static_cast<unsigned>(std::min<int64_t>(nchunks, 65535)));
  grad_cols_kernel<kAct, scalar_t><<<grid, dim3(32, kRowThreads), 0, stream>>>(
      g, ref, b, out, partial.mutable_data_ptr<A>(), l.outer, static_cast<uint32_t>(nchunks),
      static_cast<uint32_t>(width), static_cast<uint32_t>(l.inner),
      aligned_cols && width % NC == 0, p, ref_is_y, order);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return reduce_partial_sums(partial, l, /*vec_mode=*/true);
}

bool use_32bit_index(int64_t numel) {
  return numel < (int64_t{1} << 31);
}

at::Tensor bias_act_cuda(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim,
                         c10::string_view act, double alpha, double gain, double clamp) {
  ForwardPlan plan =
      plan_forward(x, b, dim, std::string_view(act.data(), act.size()), alpha, gain, clamp);
  if (plan.x.numel() == 0) return plan.y;
  c10::cuda::OptionalCUDAGuard guard(plan.x.device());
  const DenseLayout& l = plan.layout;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.x.scalar_type(),
                                  "bias_act_cuda", [&] {
    using A = acc_t<scalar_t>;
    const ActParams<A> p = make_act_params<A>(alpha, gain, clamp);
    const scalar_t* xp = plan.x.const_data_ptr<scalar_t>();
    const scalar_t* bp = plan.b.defined() ? plan.b.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* yp = plan.y.mutable_data_ptr<scalar_t>();
    FG_DISPATCH_ACT(plan.act, [&] {
      if (use_32bit_index(l.numel)) {
        launch_forward<kAct, scalar_t, uint32_t>(xp, bp, yp, l, p);
      } else {
        launch_forward<kAct, scalar_t, uint64_t>(xp, bp, yp, l, p);
      }
    });
  });
  return plan.y;
}

std::tuple<at::Tensor, at::Tensor> bias_act_grad_cuda(
    const at::Tensor& grad, const at::Tensor& ref, const std::optional<at::Tensor>& b,
    int64_t dim, c10::string_view act, double alpha, double gain, double clamp, bool ref_is_y,
    int64_t order, bool reduce) {
  GradPlan plan = plan_grad(grad, ref, b, dim, std::string_view(act.data(), act.size()), alpha,
                            gain, clamp, ref_is_y, order, reduce);
  if (plan.ref.numel() == 0) return {plan.out, plan.sums};
  c10::cuda::OptionalCUDAGuard guard(plan.ref.device());
  const DenseLayout& l = plan.layout;
  const int ord = static_cast<int>(order);
  const auto acc_type = plan.ref.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::TensorOptions acc_opts = plan.ref.options().dtype(acc_type);
  at::Tensor sums;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.ref.scalar_type(),
                                  "bias_act_grad_cuda", [&] {
    using A = acc_t<scalar_t>;
    const ActParams<A> p = make_act_params<A>(alpha, gain, clamp);
    const scalar_t* gp = plan.grad.const_data_ptr<scalar_t>();
    const scalar_t* rp = plan.ref.const_data_ptr<scalar_t>();
    // The bias is added to ref only when ref is x (plan_grad rejects b with ref_is_y).
    const scalar_t* bp =
        (plan.b.defined() && !ref_is_y) ? plan.b.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* op = plan.out.mutable_data_ptr<scalar_t>();
    FG_DISPATCH_ACT(plan.act, [&] {
      if (reduce) {
        sums = launch_grad_reduce<kAct, scalar_t>(gp, rp, bp, op, l, p, ref_is_y, ord,
                                                  acc_opts);
      } else if (use_32bit_index(l.numel)) {
        launch_grad<kAct, scalar_t, uint32_t>(gp, rp, bp, op, l, p, ref_is_y, ord);
      } else {
        launch_grad<kAct, scalar_t, uint64_t>(gp, rp, bp, op, l, p, ref_is_y, ord);
      }
    });
  });
  if (reduce) plan.sums.copy_(sums);
  return {plan.out, plan.sums};
}

}  // namespace
}  // namespace fastgan::cuda

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("bias_act", &fastgan::cuda::bias_act_cuda);
  m.impl("bias_act_grad", &fastgan::cuda::bias_act_grad_cuda);
}
