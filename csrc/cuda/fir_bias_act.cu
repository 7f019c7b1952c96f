// CUDA kernels of fastgan::fir_bias_act and fastgan::fir_bias_act_grad. Checks, shapes and
// the saved format are shared with the CPU op (common/fir_bias_act_common.h); the
// activation math is common/activations.h.
//
// One thread per destination element, in memory order (contiguous or channels_last), so
// loads and stores are coalesced in both layouts; the fh x fw taps re-read neighbours that
// the L1/L2 caches hold. The taps travel in the kernel's parameter block (no global
// constant memory) and each block copies them to shared memory. The backward kernel
// covers the union of the input and output grids: each thread writes its gx element (the
// transposed filter of g = grad * dy/dz) and adds its own g element to the bias gradient
// (warp-reduced, then one float atomic per warp and channel), so the backward is one
// kernel. The atomics make the bias gradient's summation order, and so its last bits,
// vary from run to run.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>

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

// Source = grad (Hs x Ws, the forward's output), destination = gx (Hd x Wd).
template <typename scalar_t, Act A, FirSave M>
__global__ void __launch_bounds__(kThreads)
    fir_bias_act_grad_kernel(const scalar_t* __restrict__ gy, const uint8_t* __restrict__ mask,
                             const scalar_t* __restrict__ zs, const scalar_t* __restrict__ gz,
                             scalar_t* __restrict__ gx, at::opmath_type<scalar_t>* gb, KGeom g,
                             KTaps<at::opmath_type<scalar_t>> t, ActParams<at::opmath_type<scalar_t>> ap,
                             int64_t Hu, int64_t Wu, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t sf[kFirMaxTaps * kFirMaxTaps];
  load_taps(t, sf);
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  int64_t n = 0, c = -1, h = 0, w = 0;
  acc_t own = 0;
  if (i < total) {
    coords(g, i, n, c, h, w);
    if (h < g.Hd && w < g.Wd) {
      acc_t acc = 0;
      for (int ty = 0; ty < t.fh; ++ty) {
        const int64_t r = h + ty - t.py0;
        if (r < 0 || r >= g.Hs) continue;
        // Not unrolled: unrolling the tap loop costs registers (spills) for no gain here.
#pragma unroll 1
        for (int tx = 0; tx < t.fw; ++tx) {
          const int64_t s = w + tx - t.px0;
          if (s < 0 || s >= g.Ws) continue;
          acc += sf[ty * t.fw + tx] *
                 load_g<scalar_t, A, M>(gy, mask, zs, gz, offset(g, n, c, r, s, g.Hs, g.Ws), ap);
        }
      }
      gx[offset(g, n, c, h, w, g.Hd, g.Wd)] = static_cast<scalar_t>(acc);
    }
    if (gb != nullptr && h < g.Hs && w < g.Ws) {
      own = load_g<scalar_t, A, M>(gy, mask, zs, gz, offset(g, n, c, h, w, g.Hs, g.Ws), ap);
    }
  }
  if (gb == nullptr) return;
  // Warp-uniform channel (the usual case in the contiguous layout): one atomic per warp.
  const unsigned full = 0xffffffffu;
  const int64_t c0 = __shfl_sync(full, c, 0);
  if (__all_sync(full, c == c0)) {
    for (int d = 16; d > 0; d >>= 1) own += __shfl_down_sync(full, own, d);
    if ((threadIdx.x & 31) == 0 && c0 >= 0) atomicAdd(gb + c0, own);
  } else if (c >= 0) {
    atomicAdd(gb + c, own);
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

template <typename scalar_t, Act A, FirSave M>
void launch_grad(FirGradPlan& p, at::Tensor& gb_acc, double alpha, double gain, double clamp) {
  using acc_t = at::opmath_type<scalar_t>;
  const FirGeom& g = p.g;
  const int64_t Hu = std::max(g.Hs, g.Hd), Wu = std::max(g.Ws, g.Wd);
  const int64_t total = g.N * g.C * Hu * Wu;
  auto stream = c10::cuda::getCurrentCUDAStream();
  fir_bias_act_grad_kernel<scalar_t, A, M><<<blocks_for(total), kThreads, 0, stream>>>(
      p.grad.const_data_ptr<scalar_t>(),
      M == FirSave::Mask ? p.saved.const_data_ptr<uint8_t>() : nullptr,
      M == FirSave::Z ? p.saved.const_data_ptr<scalar_t>() : nullptr,
      p.gz.defined() ? p.gz.const_data_ptr<scalar_t>() : nullptr, p.gx.mutable_data_ptr<scalar_t>(),
      p.reduce ? gb_acc.mutable_data_ptr<acc_t>() : nullptr, kgeom(g, Hu, Wu), make_ktaps<acc_t>(p.fir),
      make_act_params<acc_t>(alpha, gain, clamp), Hu, Wu, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
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
  const auto acc_type = grad.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor gb_acc = reduce ? at::zeros({p.g.C}, grad.options().dtype(acc_type)) : at::Tensor();
  if (p.gx.numel() > 0 || p.grad.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.grad.scalar_type(),
                                    "fir_bias_act_grad_cuda", [&] {
      FG_DISPATCH_ACT(p.act,
                      [&] { FG_FIR_DISPATCH_MODE(launch_grad, p, gb_acc, alpha, gain, clamp) });
    });
  }
  if (reduce) p.gb.copy_(gb_acc);
  return {p.gx, p.gb};
}

}  // namespace
}  // namespace fastgan::cuda

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("fir_bias_act", &fastgan::cuda::fir_bias_act_cuda);
  m.impl("fir_bias_act_grad", &fastgan::cuda::fir_bias_act_grad_cuda);
}
