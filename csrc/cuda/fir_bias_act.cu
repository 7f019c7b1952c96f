// CUDA kernels of fastgan::fir_bias_act and fastgan::fir_bias_act_grad. Checks, shapes and
// the saved format are shared with the CPU op (common/fir_bias_act_common.h); the
// activation math is common/activations.h.
//
// One thread per destination element, in memory order (contiguous or channels_last), so
// loads and stores are coalesced in both layouts; the fh x fw taps re-read neighbours that
// the L1/L2 caches hold. The taps travel in the kernel's parameter block (no global
// constant memory) and each block copies them to shared memory. The backward kernel
// covers the union of the input and output grids: each thread writes its gx element (the
// transposed filter of g = grad * dy/dz) and keeps its own g element for the bias
// gradient, so the backward is one kernel. The bias gradient is deterministic (no
// atomics): the grid is laid out so that each block owns a fixed set of (channel, rows)
// and writes their sums, added in a fixed order, to a partial-sum buffer, which one
// at::sum finishes (see GradMap). Results are bitwise reproducible for a given shape on a
// given GPU (at::sum's split can depend on the device).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "../common/fir_bias_act_common.h"

namespace fastgan::cuda {
namespace {

constexpr int kThreads = 256;

template <typename acc_t>
struct KTaps {
  acc_t f[kFirMaxTaps * kFirMaxTaps];  // full fh x fw filter (separable ones expanded)
  int fh, fw;
  int64_t px0, py0;
};

template <typename acc_t>
KTaps<acc_t> make_ktaps(const FirSpec& s) {
  KTaps<acc_t> t{};
  t.fh = s.fh;
  t.fw = s.fw;
  t.px0 = s.px0;
  t.py0 = s.py0;
  for (int i = 0; i < s.fh; ++i)
    for (int j = 0; j < s.fw; ++j) t.f[i * s.fw + j] = static_cast<acc_t>(s.f2(i, j));
  return t;
}

// Division by a positive int64 divisor without the 64-bit integer division subroutine
// (whose call makes ptxas spill registers around it): a double-precision reciprocal
// estimate of the quotient, then exact integer correction steps. Exact for every dividend
// below 2^53 (the estimate is then off by at most a couple of units).
struct FastDiv {
  int64_t d = 1;
  double inv = 1.0;
};

inline FastDiv fast_div(int64_t d) {
  FastDiv f;
  f.d = d > 0 ? d : 1;
  f.inv = 1.0 / static_cast<double>(f.d);
  return f;
}

__device__ __forceinline__ int64_t div_mod(int64_t i, const FastDiv& f, int64_t& r) {
  int64_t q = static_cast<int64_t>(static_cast<double>(i) * f.inv);
  r = i - q * f.d;
  while (r < 0) {
    --q;
    r += f.d;
  }
  while (r >= f.d) {
    ++q;
    r -= f.d;
  }
  return q;
}

struct KGeom {
  int64_t C, Hs, Ws, Hd, Wd;
  bool cl;
  FastDiv dc, dh, dw;  // divisors of the grid the kernel's threads cover (coords)
};

__device__ __forceinline__ int64_t offset(const KGeom& g, int64_t n, int64_t c, int64_t h,
                                          int64_t w, int64_t H, int64_t W) {
  return g.cl ? ((n * H + h) * W + w) * g.C + c : ((n * g.C + c) * H + h) * W + w;
}

// Decomposes a flat index in memory order of the [N, C, H, W] grid described by g.dc,
// g.dh, g.dw.
__device__ __forceinline__ void coords(const KGeom& g, int64_t i, int64_t& n, int64_t& c,
                                       int64_t& h, int64_t& w) {
  if (g.cl) {
    i = div_mod(i, g.dc, c);
    i = div_mod(i, g.dw, w);
    n = div_mod(i, g.dh, h);
  } else {
    i = div_mod(i, g.dw, w);
    i = div_mod(i, g.dh, h);
    n = div_mod(i, g.dc, c);
  }
}

// Copies the taps from the parameter block into shared memory: the tap loops index them
// dynamically, which on parameter space costs address arithmetic (and registers) per tap.
// Every thread of the block must call it (it synchronizes).
template <typename acc_t>
__device__ __forceinline__ void load_taps(const KTaps<acc_t>& t, acc_t* sf) {
  const int nt = t.fh * t.fw;
  for (int k = threadIdx.x; k < nt; k += kThreads) sf[k] = t.f[k];
  __syncthreads();
}

template <typename scalar_t, Act A, FirSave M>
__global__ void __launch_bounds__(kThreads)
    fir_bias_act_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
                        scalar_t* __restrict__ y, uint8_t* __restrict__ mask,
                        scalar_t* __restrict__ zs, KGeom g, KTaps<at::opmath_type<scalar_t>> t,
                        ActParams<at::opmath_type<scalar_t>> ap, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t sf[kFirMaxTaps * kFirMaxTaps];
  load_taps(t, sf);
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= total) return;
  int64_t n, c, h, w;
  coords(g, i, n, c, h, w);
  acc_t acc = 0;
  for (int ty = 0; ty < t.fh; ++ty) {
    const int64_t r = h + ty - t.py0;
    if (r < 0 || r >= g.Hs) continue;
    for (int tx = 0; tx < t.fw; ++tx) {
      const int64_t s = w + tx - t.px0;
      if (s < 0 || s >= g.Ws) continue;
      acc += sf[ty * t.fw + tx] * static_cast<acc_t>(x[offset(g, n, c, r, s, g.Hs, g.Ws)]);
    }
  }
  const acc_t z = b != nullptr ? acc + static_cast<acc_t>(b[c]) : acc;
  const acc_t v = bias_act_forward_elem<A>(z, ap.alpha, ap.gain, ap.clamp, ap.has_clamp);
  y[i] = static_cast<scalar_t>(v);
  if constexpr (M == FirSave::Mask) {
    mask[i] = fir_mask(z, v, ap.clamp, ap.has_clamp);
  } else if constexpr (M == FirSave::Z) {
    zs[i] = static_cast<scalar_t>(z);
  }
}

template <typename scalar_t, Act A, FirSave M>
__device__ __forceinline__ at::opmath_type<scalar_t> load_g(
    const scalar_t* __restrict__ gy, const uint8_t* __restrict__ mask,
    const scalar_t* __restrict__ zs, const scalar_t* __restrict__ gz, int64_t o,
    const ActParams<at::opmath_type<scalar_t>>& ap) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t z = M == FirSave::Z ? static_cast<acc_t>(zs[o]) : acc_t(0);
  const uint8_t m = M == FirSave::Mask ? mask[o] : uint8_t(0);
  acc_t v = static_cast<acc_t>(gy[o]) *
            fir_grad_factor<A, M>(z, m, ap.alpha, ap.gain, ap.inv_gain, ap.clamp, ap.has_clamp);
  if (gz != nullptr) v += static_cast<acc_t>(gz[o]);
  return v;
}

// Thread -> element mapping of the gradient kernel over the union grid Hu x Wu, chosen so
// that the bias gradient reduces in a fixed order without atomics. Every number here is
// derived from the shape alone.
//   contiguous: planes (n, c) of P = Hu * Wu elements, plane q = n * C + c.
//     P <= kThreads: block b holds G = kThreads / P whole planes (thread t: plane
//       b * G + t / P, element t % P); partial[q] = the plane's sum.
//     P > kThreads: a plane is J chunks of kThreads elements; block b = q * J + chunk;
//       partial[b] = the chunk's sum.
//   channels_last: rows r = (n * Hu + h) * Wu + w of C channels. Column tiles of TW
//     channels (C if C <= kThreads, else kThreads); a block covers G = kThreads / TW rows
//     per step for S steps, rows [rb * G * S, (rb + 1) * G * S), block b = rb * CT + ct.
//     Each thread keeps one channel and sums its S elements; the G threads of a channel
//     are added in row order: partial[rb * C + c].
struct GradMap {
  int64_t plane = 0;   // Hu * Wu
  int64_t planes = 0;  // N * C (contiguous)
  int64_t rows = 0;    // N * Hu * Wu (channels_last)
  int P = 0;           // Hu * Wu when P <= kThreads (contiguous), else 0
  int G = 1, J = 1, TW = 1, CT = 1, S = 1;
  int64_t blocks = 0;
  int64_t partial_len = 0;
};

constexpr int64_t kRowsPerPartial = 64;    // channels_last: target rows per block
constexpr int64_t kTargetRowBlocks = 512;  // channels_last: fewer steps on small tensors

GradMap grad_map(const FirGeom& g, int64_t Hu, int64_t Wu) {
  GradMap m;
  m.plane = Hu * Wu;
  if (!g.cl) {
    const int64_t P = m.plane;
    m.planes = g.N * g.C;
    if (P <= kThreads) {
      m.P = static_cast<int>(P);
      m.G = static_cast<int>(kThreads / P);
      m.blocks = (m.planes + m.G - 1) / m.G;
      m.partial_len = m.planes;
    } else {
      const int64_t J = (P + kThreads - 1) / kThreads;
      m.J = static_cast<int>(J);
      m.blocks = m.planes * J;
      m.partial_len = m.blocks;
    }
  } else {
    m.rows = g.N * Hu * Wu;
    const int64_t TW = std::min<int64_t>(g.C, kThreads);
    m.TW = static_cast<int>(TW);
    m.G = static_cast<int>(kThreads / TW);
    m.CT = static_cast<int>((g.C + TW - 1) / TW);
    const int64_t groups = (m.rows + m.G - 1) / m.G;
    const int64_t max_steps = std::max<int64_t>(1, (kRowsPerPartial + m.G - 1) / m.G);
    m.S = static_cast<int>(std::clamp<int64_t>((groups + kTargetRowBlocks - 1) / kTargetRowBlocks,
                                               1, max_steps));
    const int64_t row_blocks = (groups + m.S - 1) / m.S;
    m.blocks = row_blocks * m.CT;
    m.partial_len = row_blocks * g.C;
  }
  TORCH_CHECK(m.blocks <= std::numeric_limits<int32_t>::max(),
              "fir_bias_act_grad: tensor too large for the CUDA kernel (", m.blocks, " blocks)");
  return m;
}

// Writes gx at (n, c, h, w) when that is inside the destination grid and returns g there
// when it is inside the source grid (else 0): this thread's share of the bias gradient.
template <typename scalar_t, Act A, FirSave M>
__device__ __forceinline__ at::opmath_type<scalar_t> grad_element(
    const scalar_t* __restrict__ gy, const uint8_t* __restrict__ mask,
    const scalar_t* __restrict__ zs, const scalar_t* __restrict__ gz, scalar_t* __restrict__ gx,
    const KGeom& g, const at::opmath_type<scalar_t>* sf, int fh, int fw, int64_t px0,
    int64_t py0, const ActParams<at::opmath_type<scalar_t>>& ap, bool want_own, int64_t n,
    int64_t c, int64_t h, int64_t w) {
  using acc_t = at::opmath_type<scalar_t>;
  if (h < g.Hd && w < g.Wd) {
    acc_t acc = 0;
    for (int ty = 0; ty < fh; ++ty) {
      const int64_t r = h + ty - py0;
      if (r < 0 || r >= g.Hs) continue;
      // Not unrolled: unrolling the tap loop costs registers (spills) for no gain here.
#pragma unroll 1
      for (int tx = 0; tx < fw; ++tx) {
        const int64_t s = w + tx - px0;
        if (s < 0 || s >= g.Ws) continue;
        acc += sf[ty * fw + tx] *
               load_g<scalar_t, A, M>(gy, mask, zs, gz, offset(g, n, c, r, s, g.Hs, g.Ws), ap);
      }
    }
    gx[offset(g, n, c, h, w, g.Hd, g.Wd)] = static_cast<scalar_t>(acc);
  }
  if (want_own && h < g.Hs && w < g.Ws) {
    return load_g<scalar_t, A, M>(gy, mask, zs, gz, offset(g, n, c, h, w, g.Hs, g.Ws), ap);
  }
  return acc_t(0);
}

// Sum of v[0], v[stride], ..., v[(n - 1) * stride] in a fixed order (four interleaved
// accumulators: a shorter dependency chain).
template <typename acc_t>
__device__ __forceinline__ acc_t strided_sum(const acc_t* v, int n, int stride) {
  acc_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int k = 0;
  for (; k + 4 <= n; k += 4) {
    a0 += v[k * stride];
    a1 += v[(k + 1) * stride];
    a2 += v[(k + 2) * stride];
    a3 += v[(k + 3) * stride];
  }
  for (; k < n; ++k) a0 += v[k * stride];
  return (a0 + a1) + (a2 + a3);
}

// Source = grad (Hs x Ws, the forward's output), destination = gx (Hd x Wd). `partial`:
// the bias gradient's partial sums (GradMap), or null when no reduction is asked.
// No __launch_bounds__: with it ptxas (CUDA 13) aims at 32 registers and spills; without,
// 40-64 registers and no spills.
template <typename scalar_t, Act A, FirSave M, bool CL>
__global__ void fir_bias_act_grad_kernel(
    const scalar_t* __restrict__ gy, const uint8_t* __restrict__ mask,
    const scalar_t* __restrict__ zs, const scalar_t* __restrict__ gz, scalar_t* __restrict__ gx,
    at::opmath_type<scalar_t>* __restrict__ partial, KGeom g, GradMap m,
    KTaps<at::opmath_type<scalar_t>> t, ActParams<at::opmath_type<scalar_t>> ap) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t sf[kFirMaxTaps * kFirMaxTaps];
  __shared__ acc_t part[kThreads];
  load_taps(t, sf);
  const int tid = threadIdx.x;
  const uint32_t b = blockIdx.x;
  const bool want_own = partial != nullptr;
  acc_t own = 0;
  if constexpr (!CL) {
    int64_t q, e;
    bool valid;
    if (m.P > 0) {  // G whole planes per block
      q = static_cast<int64_t>(b) * m.G + tid / m.P;
      e = tid % m.P;
      valid = tid < m.G * m.P && q < m.planes;
    } else {  // one chunk of one plane
      const uint32_t qq = b / static_cast<uint32_t>(m.J);
      q = qq;
      e = static_cast<int64_t>(b - qq * static_cast<uint32_t>(m.J)) * kThreads + tid;
      valid = e < m.plane;
    }
    if (valid) {
      int64_t c, w;
      const int64_t n = div_mod(q, g.dc, c);
      const int64_t h = div_mod(e, g.dw, w);
      own = grad_element<scalar_t, A, M>(gy, mask, zs, gz, gx, g, sf, t.fh, t.fw, t.px0, t.py0,
                                         ap, want_own, n, c, h, w);
    }
    if (!want_own) return;  // uniform: a kernel argument
    if (m.P > 0) {
      part[tid] = own;
      __syncthreads();
      const int64_t qs = static_cast<int64_t>(b) * m.G + tid;
      if (tid < m.G && qs < m.planes) partial[qs] = strided_sum(part + tid * m.P, m.P, 1);
    } else {
      for (int d = 16; d > 0; d >>= 1) own += __shfl_down_sync(0xffffffffu, own, d);
      if ((tid & 31) == 0) part[tid >> 5] = own;
      __syncthreads();
      if (tid == 0) partial[b] = strided_sum(part, kThreads / 32, 1);
    }
  } else {
    const uint32_t rb = b / static_cast<uint32_t>(m.CT);
    const int ct = static_cast<int>(b - rb * static_cast<uint32_t>(m.CT));
    const int ro = tid / m.TW;
    const int64_t c = static_cast<int64_t>(ct) * m.TW + (tid - ro * m.TW);
    if (tid < m.G * m.TW && c < g.C) {
      const int64_t row0 = static_cast<int64_t>(rb) * m.G * m.S + ro;
      for (int k = 0; k < m.S; ++k) {
        const int64_t r = row0 + static_cast<int64_t>(k) * m.G;
        if (r >= m.rows) break;
        int64_t h, w;
        const int64_t n = div_mod(div_mod(r, g.dw, w), g.dh, h);
        own += grad_element<scalar_t, A, M>(gy, mask, zs, gz, gx, g, sf, t.fh, t.fw, t.px0,
                                            t.py0, ap, want_own, n, c, h, w);
      }
    }
    if (!want_own) return;
    part[tid] = own;
    __syncthreads();
    if (tid < m.TW && c < g.C) {
      partial[static_cast<int64_t>(rb) * g.C + c] = strided_sum(part + tid, m.G, m.TW);
    }
  }
}

// grid_h x grid_w: the spatial size of the grid the kernel's threads cover.
KGeom kgeom(const FirGeom& g, int64_t grid_h, int64_t grid_w) {
  KGeom k;
  k.C = g.C;
  k.Hs = g.Hs;
  k.Ws = g.Ws;
  k.Hd = g.Hd;
  k.Wd = g.Wd;
  k.cl = g.cl;
  k.dc = fast_div(g.C);
  k.dh = fast_div(grid_h);
  k.dw = fast_div(grid_w);
  return k;
}

int64_t blocks_for(int64_t total) { return (total + kThreads - 1) / kThreads; }

template <typename scalar_t, Act A, FirSave M>
void launch_forward(FirForwardPlan& p, double alpha, double gain, double clamp) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = p.y.numel();
  auto stream = c10::cuda::getCurrentCUDAStream();
  fir_bias_act_kernel<scalar_t, A, M><<<blocks_for(total), kThreads, 0, stream>>>(
      p.x.const_data_ptr<scalar_t>(), p.b.defined() ? p.b.const_data_ptr<scalar_t>() : nullptr,
      p.y.mutable_data_ptr<scalar_t>(),
      M == FirSave::Mask ? p.saved.mutable_data_ptr<uint8_t>() : nullptr,
      M == FirSave::Z ? p.saved.mutable_data_ptr<scalar_t>() : nullptr, kgeom(p.g, p.g.Hd, p.g.Wd),
      make_ktaps<acc_t>(p.fir), make_act_params<acc_t>(alpha, gain, clamp), total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Returns the bias gradient in the accumulation type when p.reduce (else undefined).
template <typename scalar_t, Act A, FirSave M>
void launch_grad(FirGradPlan& p, at::Tensor& gb_acc, double alpha, double gain, double clamp) {
  using acc_t = at::opmath_type<scalar_t>;
  const FirGeom& g = p.g;
  const int64_t Hu = std::max(g.Hs, g.Hd), Wu = std::max(g.Ws, g.Wd);
  const GradMap m = grad_map(g, Hu, Wu);
  if (m.blocks == 0) return;
  at::Tensor partial;
  if (p.reduce) {
    partial = at::empty({m.partial_len},
                        p.grad.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
  }
  auto stream = c10::cuda::getCurrentCUDAStream();
  const scalar_t* gyp = p.grad.const_data_ptr<scalar_t>();
  const uint8_t* mp = M == FirSave::Mask ? p.saved.const_data_ptr<uint8_t>() : nullptr;
  const scalar_t* zp = M == FirSave::Z ? p.saved.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* gzp = p.gz.defined() ? p.gz.const_data_ptr<scalar_t>() : nullptr;
  scalar_t* gxp = p.gx.mutable_data_ptr<scalar_t>();
  acc_t* pp = p.reduce ? partial.mutable_data_ptr<acc_t>() : nullptr;
  const KGeom kg = kgeom(g, Hu, Wu);
  const KTaps<acc_t> taps = make_ktaps<acc_t>(p.fir);
  const ActParams<acc_t> ap = make_act_params<acc_t>(alpha, gain, clamp);
  const dim3 grid(static_cast<unsigned>(m.blocks));
  if (g.cl) {
    fir_bias_act_grad_kernel<scalar_t, A, M, true>
        <<<grid, kThreads, 0, stream>>>(gyp, mp, zp, gzp, gxp, pp, kg, m, taps, ap);
  } else {
    fir_bias_act_grad_kernel<scalar_t, A, M, false>
        <<<grid, kThreads, 0, stream>>>(gyp, mp, zp, gzp, gxp, pp, kg, m, taps, ap);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (!p.reduce) return;
  // The partial sums in a fixed order: contiguous [N, C, chunks], channels_last [blocks, C].
  if (g.cl) {
    gb_acc = partial.view({-1, g.C}).sum(0);
  } else {
    gb_acc = partial.view({g.N, g.C, -1}).sum(c10::IntArrayRef{0, 2});
  }
}

#define FG_FIR_DISPATCH_MODE(FN, ...)                                                    \
  if constexpr (!(kAct == Act::Linear || kAct == Act::ReLU || kAct == Act::LReLU)) {      \
    FN<scalar_t, kAct, FirSave::Z>(__VA_ARGS__);                                          \
  } else if constexpr (kAct == Act::Linear) {                                            \
    if (p.save == FirSave::None) {                                                        \
      FN<scalar_t, kAct, FirSave::None>(__VA_ARGS__);                                     \
    } else {                                                                              \
      FN<scalar_t, kAct, FirSave::Mask>(__VA_ARGS__);                                     \
    }                                                                                     \
  } else {                                                                                \
    FN<scalar_t, kAct, FirSave::Mask>(__VA_ARGS__);                                       \
  }

std::tuple<at::Tensor, at::Tensor> fir_bias_act_cuda(
    const at::Tensor& x, const std::optional<at::Tensor>& b, c10::ArrayRef<double> f,
    int64_t fh, int64_t fw, bool separable, c10::IntArrayRef pad, c10::string_view act,
    double alpha, double gain, double clamp, std::optional<at::MemoryFormat> out_format) {
  c10::cuda::CUDAGuard guard(x.device());
  FirForwardPlan p = plan_fir_forward(x, b, f, fh, fw, separable, pad,
                                      std::string_view(act.data(), act.size()), alpha, gain,
                                      clamp, out_format, false);
  if (p.y.numel() == 0) return finish_fir_forward(p);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(),
                                  "fir_bias_act_cuda", [&] {
    FG_DISPATCH_ACT(p.act, [&] { FG_FIR_DISPATCH_MODE(launch_forward, p, alpha, gain, clamp) });
  });
  return finish_fir_forward(p);
}

std::tuple<at::Tensor, at::Tensor> fir_bias_act_grad_cuda(
    const at::Tensor& grad, const at::Tensor& saved, const std::optional<at::Tensor>& gz,
    c10::ArrayRef<double> f, int64_t fh, int64_t fw, bool separable, c10::IntArrayRef pad,
    int64_t in_h, int64_t in_w, c10::string_view act, double alpha, double gain, double clamp,
    bool reduce) {
  c10::cuda::CUDAGuard guard(grad.device());
  FirGradPlan p = plan_fir_grad(grad, saved, gz, f, fh, fw, separable, pad, in_h, in_w,
                                std::string_view(act.data(), act.size()), alpha, gain, clamp,
                                reduce, false);
  at::Tensor gb_acc;
  if (p.gx.numel() > 0 || p.grad.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.grad.scalar_type(),
                                    "fir_bias_act_grad_cuda", [&] {
      FG_DISPATCH_ACT(p.act,
                      [&] { FG_FIR_DISPATCH_MODE(launch_grad, p, gb_acc, alpha, gain, clamp) });
    });
  }
  if (reduce) {
    if (gb_acc.defined()) {
      p.gb.copy_(gb_acc);
    } else {
      p.gb.zero_();
    }
  }
  return {p.gx, p.gb};
}

}  // namespace
}  // namespace fastgan::cuda

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("fir_bias_act", &fastgan::cuda::fir_bias_act_cuda);
  m.impl("fir_bias_act_grad", &fastgan::cuda::fir_bias_act_grad_cuda);
}
