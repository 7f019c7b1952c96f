// CPU kernels of fastgan::fir_bias_act / fir_bias_act_grad, compiled once per instruction
// set (fir_bias_act_default.cpp, fir_bias_act_avx2.cpp; the same pattern as
// bias_act_kernel.h / upfirdn2d_kernel.h). The including file defines FG_CPU_KERNEL_NS and,
// for AVX2, CPU_CAPABILITY_AVX2 and CPU_CAPABILITY before including any header.
//
// Work is split into items = (plane, strip of output rows). A plane is one (n, c) image in
// the contiguous layout, or one whole image n (all channels interleaved) in channels_last;
// either way a row of a plane is contiguous in memory, `CB` (1 or C) values per pixel. A
// strip's input rows are converted to float (or double), zero-padded into a small buffer
// that stays in cache, filtered (separable: one vertical then one horizontal pass per output
// row; full: fh * fw passes), and the epilogue (bias, activation, gain, clamp, mask) runs on
// at::vec::Vectorized while the row is in L1. Every inner loop runs over contiguous memory
// and vectorizes for both layouts. Partial bias sums are kept per item and summed in a
// fixed order, so results do not depend on the thread count.
#pragma once

#ifndef FG_CPU_KERNEL_NS
#error "define FG_CPU_KERNEL_NS before including fir_bias_act_kernel.h"
#endif

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/from_blob.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "vec_math.h"  // before activations.h

#include "../common/fir_bias_act_common.h"
#include "cpu_memory.h"
#include "fir_bias_act_cpu.h"

namespace fastgan::cpu::FG_CPU_KERNEL_NS {
namespace {

template <typename acc_t>
struct Taps {
  int fh, fw;
  bool separable;
  int64_t px0, py0;
  acc_t fy[kFirMaxTaps], fx[kFirMaxTaps], f2[kFirMaxTaps * kFirMaxTaps];
};

template <typename acc_t>
Taps<acc_t> make_taps(const FirSpec& s) {
  Taps<acc_t> t{};
  t.fh = s.fh;
  t.fw = s.fw;
  t.separable = s.separable;
  t.px0 = s.px0;
  t.py0 = s.py0;
  for (int i = 0; i < s.fh; ++i) t.fy[i] = static_cast<acc_t>(s.fy(i));
  for (int i = 0; i < s.fw; ++i) t.fx[i] = static_cast<acc_t>(s.fx(i));
  for (int i = 0; i < s.fh; ++i)
    for (int j = 0; j < s.fw; ++j) t.f2[i * s.fw + j] = static_cast<acc_t>(s.f2(i, j));
  return t;
}

struct Planes {
  int64_t P, CB, Hs, Ws, Hd, Wd, C;
  bool cl, dst_nchw, src_nchw;
};

// dst[j * ld_dst + i] = src[i * ld_src + j] for i < rows, j < cols, converting S to D
// (8 x 8 register blocks for float).
template <typename S, typename D>
void transpose_rows(const S* __restrict__ src, int64_t rows, int64_t cols, int64_t ld_src,
                    D* __restrict__ dst, int64_t ld_dst) {
  int64_t i0 = 0;
  if constexpr (std::is_same_v<S, float> && std::is_same_v<D, float>) {
    for (; i0 + 8 <= rows; i0 += 8) {
      int64_t j = 0;
      for (; j + 8 <= cols; j += 8) {
        at::vec::transpose_mxn<float, 8, 8>(src + i0 * ld_src + j, ld_src, dst + j * ld_dst + i0,
                                            ld_dst);
      }
      for (; j < cols; ++j)
        for (int64_t i = i0; i < i0 + 8; ++i) dst[j * ld_dst + i] = src[i * ld_src + j];
    }
  }
  for (; i0 < rows; i0 += 16) {
    const int64_t i1 = std::min(rows, i0 + 16);
    for (int64_t j = 0; j < cols; ++j)
      for (int64_t i = i0; i < i1; ++i) dst[j * ld_dst + i] = static_cast<D>(src[i * ld_src + j]);
  }
}

Planes make_planes(const FirGeom& g) {
  Planes p;
  p.cl = g.cl;
  p.dst_nchw = g.dst_nchw;
  p.src_nchw = g.src_nchw;
  p.C = g.C;
  p.CB = g.cl ? g.C : 1;
  p.P = g.cl ? g.N : g.N * g.C;
  p.Hs = g.Hs;
  p.Ws = g.Ws;
  p.Hd = g.Hd;
  p.Wd = g.Wd;
  return p;
}

// Output rows per item: the padded input strip should stay within ~128 KiB, but with at
// least 4 * (fh - 1) rows, so that the fh - 1 halo rows every strip re-reads cost at most
// a quarter more (wide channels_last rows: then the strip lives in L2, not L1).
template <typename acc_t>
int64_t strip_rows(const Planes& pl, int fh, int fw) {
  const int64_t row_bytes = (pl.Wd + fw - 1) * pl.CB * static_cast<int64_t>(sizeof(acc_t));
  const int64_t r = (int64_t{128} << 10) / std::max<int64_t>(row_bytes, 1) - (fh - 1);
  return std::clamp<int64_t>(std::max<int64_t>(r, 4 * (fh - 1)), 1, pl.Hd);
}

// dst[p][h][e] = sum_{ty, tx} f[ty][tx] * srcpad[p][h + ty][e + tx * CB] for e < Wd * CB.
//   load(item, p, r, row, owned): fills row[0 .. Ws * CB) with source row r of plane p;
//     `owned` marks the rows whose partition this item owns (for reductions): every source
//     row is owned by exactly one item of its plane.
//   store(p, h, acc, scratch): consumes destination row h of plane p (acc may be modified;
//     scratch holds Wd * CB values).
template <typename acc_t, typename Load, typename Store>
void fir_drive(const Planes& pl, const Taps<acc_t>& t, int64_t strips, const Load& load,
               const Store& store) {
  const int64_t CB = pl.CB;
  const int64_t Wp = pl.Wd + t.fw - 1;
  const int64_t lp = Wp * CB, ls = pl.Ws * CB, ld = pl.Wd * CB;
  const int64_t R = (pl.Hd + strips - 1) / strips;
  const int64_t items = pl.P * strips;
  // Columns of the padded row that come from the source: [c_lo, c_hi).
  const int64_t c_lo = std::clamp<int64_t>(t.px0, 0, Wp);
  const int64_t c_hi = std::clamp<int64_t>(pl.Ws + t.px0, c_lo, Wp);
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buf((R + t.fh - 1) * lp), tmp(std::max<int64_t>(ls, 1)), vrow(lp),
        acc(ld), scratch(ld);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t p = item / strips, s = item % strips;
      const int64_t h0 = s * R, h1 = std::min(pl.Hd, h0 + R);
      if (h0 >= h1) {
        // An empty strip (rounding) still owns its rows, if any.
        continue;
      }
      const int64_t nrows = h1 - h0 + t.fh - 1;
      const int64_t r_first = h0 - t.py0;  // source row of buffer row 0
      int64_t own_lo = s == 0 ? 0 : r_first;
      int64_t own_hi = (s == strips - 1 || h1 == pl.Hd) ? pl.Hs : h1 - t.py0;
      own_lo = std::clamp<int64_t>(own_lo, 0, pl.Hs);
      own_hi = std::clamp<int64_t>(own_hi, own_lo, pl.Hs);
      for (int64_t i = 0; i < nrows; ++i) {
        acc_t* brow = buf.data() + i * lp;
        const int64_t r = r_first + i;
        if (r < 0 || r >= pl.Hs || c_lo >= c_hi) {
          std::fill(brow, brow + lp, acc_t(0));
          if (r >= 0 && r < pl.Hs && r >= own_lo && r < own_hi) load(item, p, r, tmp.data(), true);
          continue;
        }
        load(item, p, r, tmp.data(), r >= own_lo && r < own_hi);
        std::fill(brow, brow + c_lo * CB, acc_t(0));
        std::memcpy(brow + c_lo * CB, tmp.data() + (c_lo - t.px0) * CB,
                    (c_hi - c_lo) * CB * sizeof(acc_t));
        std::fill(brow + c_hi * CB, brow + lp, acc_t(0));
      }
      // Owned rows that no output row reads (padding that crops): still reduced.
      for (int64_t r = own_lo; r < own_hi; ++r) {
        if (r < r_first || r >= r_first + nrows) load(item, p, r, tmp.data(), true);
      }
      for (int64_t h = h0; h < h1; ++h) {
        const acc_t* base = buf.data() + (h - h0) * lp;
        acc_t* a = acc.data();
        if (t.separable) {
          acc_t* v = vrow.data();
          {
            const acc_t f0 = t.fy[0];
            for (int64_t e = 0; e < lp; ++e) v[e] = f0 * base[e];
          }
          for (int ty = 1; ty < t.fh; ++ty) {
            const acc_t f = t.fy[ty];
            const acc_t* src = base + ty * lp;
            for (int64_t e = 0; e < lp; ++e) v[e] += f * src[e];
          }
          {
            const acc_t f0 = t.fx[0];
            for (int64_t e = 0; e < ld; ++e) a[e] = f0 * v[e];
          }
          for (int tx = 1; tx < t.fw; ++tx) {
            const acc_t f = t.fx[tx];
            const acc_t* src = v + tx * CB;
            for (int64_t e = 0; e < ld; ++e) a[e] += f * src[e];
          }
        } else {
          std::fill(a, a + ld, acc_t(0));
          for (int ty = 0; ty < t.fh; ++ty) {
            for (int tx = 0; tx < t.fw; ++tx) {
              const acc_t f = t.f2[ty * t.fw + tx];
              const acc_t* src = base + ty * lp + tx * CB;
              for (int64_t e = 0; e < ld; ++e) a[e] += f * src[e];
            }
          }
        }
        store(p, h, a, scratch.data());
      }
    }
  });
}

// Bias per element of a destination row (channels_last: b[e % C]; contiguous: one value
// per plane, looked up by the caller).
template <typename acc_t, typename scalar_t>
std::vector<acc_t> bias_row(const Planes& pl, const at::Tensor& b) {
  std::vector<acc_t> row;
  if (!b.defined() || !pl.cl) return row;
  const scalar_t* bp = b.const_data_ptr<scalar_t>();
  row.resize(pl.Wd * pl.C);
  for (int64_t w = 0; w < pl.Wd; ++w)
    for (int64_t c = 0; c < pl.C; ++c) row[w * pl.C + c] = static_cast<acc_t>(bp[c]);
  return row;
}

template <typename scalar_t, Act A, FirSave M>
void forward_impl(FirForwardPlan& plan, double alpha, double gain, double clamp) {
  using acc_t = at::opmath_type<scalar_t>;
  const Planes pl = make_planes(plan.g);
  const Taps<acc_t> taps = make_taps<acc_t>(plan.fir);
  const auto ap = make_act_params<acc_t>(alpha, gain, clamp);
  const int64_t strips = (pl.Hd + strip_rows<acc_t>(pl, taps.fh, taps.fw) - 1) /
                         strip_rows<acc_t>(pl, taps.fh, taps.fw);
  const scalar_t* x = plan.x.const_data_ptr<scalar_t>();
  scalar_t* y = plan.y.mutable_data_ptr<scalar_t>();
  uint8_t* mask = M == FirSave::Mask ? plan.saved.mutable_data_ptr<uint8_t>() : nullptr;
  scalar_t* zs = M == FirSave::Z ? plan.saved.mutable_data_ptr<scalar_t>() : nullptr;
  const scalar_t* b = plan.b.defined() ? plan.b.const_data_ptr<scalar_t>() : nullptr;
  const std::vector<acc_t> brow = bias_row<acc_t, scalar_t>(pl, plan.b);
  const int64_t ls = pl.Ws * pl.CB, ld = pl.Wd * pl.CB;

  auto load = [&](int64_t, int64_t p, int64_t r, acc_t* row, bool) {
    if (pl.src_nchw) {
      // Working in channels_last from a contiguous x: gather row r of every channel.
      transpose_rows(x + p * pl.C * pl.Hs * pl.Ws + r * pl.Ws, pl.C, pl.Ws, pl.Hs * pl.Ws, row,
                     pl.C);
    } else {
      at::vec::convert(x + (p * pl.Hs + r) * ls, row, ls);
    }
  };
  // The epilogue: z = acc + bias, y = clamp(gain * act(z)) on Vectorized while the row is
  // in L1 (float y is written straight to the output), then the saved mask / z.
  using Vec = at::vec::Vectorized<acc_t>;
  constexpr int64_t kV = Vec::size();
  constexpr bool kDirect = std::is_same_v<scalar_t, acc_t>;
  const acc_t alpha_v = ap.alpha, gain_v = ap.gain, clamp_v = ap.clamp;
  const bool has_clamp = ap.has_clamp;
  const Vec valpha(alpha_v), vgain(gain_v), vclamp(clamp_v);
  // act_row: yv[0 .. L) = clamp(gain * act(z)); save_row: the saved mask / z of L elements
  // (the mask from z and y).
  auto act_row = [&](const acc_t* __restrict__ z, int64_t L, acc_t* __restrict__ yv) {
    int64_t e = 0;
    for (; e + kV <= L; e += kV)
      bias_act_forward_elem<A>(Vec::loadu(z + e), valpha, vgain, vclamp, has_clamp).store(yv + e);
    for (; e < L; ++e) yv[e] = bias_act_forward_elem<A>(z[e], alpha_v, gain_v, clamp_v, has_clamp);
  };
  auto save_row = [&](const acc_t* __restrict__ z, const acc_t* __restrict__ yy, int64_t L,
                      uint8_t* __restrict__ mo, scalar_t* __restrict__ zo) {
    if constexpr (M == FirSave::Mask) {
      if (has_clamp) {
        for (int64_t i = 0; i < L; ++i)
          mo[i] = static_cast<uint8_t>((z[i] > acc_t(0) ? 1 : 0) |
                                       (math::fg_abs(yy[i]) < clamp_v ? 2 : 0));
      } else {
        for (int64_t i = 0; i < L; ++i) mo[i] = static_cast<uint8_t>(z[i] > acc_t(0) ? 3 : 2);
      }
    } else if constexpr (M == FirSave::Z) {
      at::vec::convert(z, zo, L);
    }
  };
  const int64_t plane_d = pl.Hd * pl.Wd;
  auto store = [&](int64_t p, int64_t h, acc_t* __restrict__ a, acc_t* __restrict__ v) {
    // z = acc + bias, in place.
    const acc_t* bb = (b != nullptr && pl.cl) ? brow.data() : nullptr;
    if (bb != nullptr) {
      int64_t e = 0;
      for (; e + kV <= ld; e += kV) (Vec::loadu(a + e) + Vec::loadu(bb + e)).store(a + e);
      for (; e < ld; ++e) a[e] += bb[e];
    } else if (b != nullptr) {
      const acc_t bc = static_cast<acc_t>(b[p % pl.C]);
      const Vec vbc(bc);
      int64_t e = 0;
      for (; e + kV <= ld; e += kV) (Vec::loadu(a + e) + vbc).store(a + e);
      for (; e < ld; ++e) a[e] += bc;
    }
    const int64_t off = (p * pl.Hd + h) * ld;  // saved: always the working layout
    uint8_t* mo = mask != nullptr ? mask + off : nullptr;
    scalar_t* zo = zs != nullptr ? zs + off : nullptr;
    if (!pl.dst_nchw) {
      acc_t* yv = v;
      if constexpr (kDirect) yv = reinterpret_cast<acc_t*>(y + off);
      act_row(a, ld, yv);
      if constexpr (!kDirect) at::vec::convert(static_cast<const acc_t*>(yv), y + off, ld);
      save_row(a, yv, ld, mo, zo);
      return;
    }
    // Working in channels_last, writing a contiguous y: y's row [Wd][C] is transposed to
    // [C][Wd] from cache (8 x 8 register blocks for float) straight into the output.
    act_row(a, ld, v);
    save_row(a, v, ld, mo, zo);
    transpose_rows(static_cast<const acc_t*>(v), pl.Wd, pl.C, pl.C,
                   y + p * pl.C * plane_d + h * pl.Wd, plane_d);
  };
  fir_drive<acc_t>(pl, taps, strips, load, store);
}

template <typename scalar_t, Act A, FirSave M>
void grad_impl(FirGradPlan& plan, double alpha, double gain, double clamp) {
  using acc_t = at::opmath_type<scalar_t>;
  const Planes pl = make_planes(plan.g);
  const Taps<acc_t> taps = make_taps<acc_t>(plan.fir);
  const auto ap = make_act_params<acc_t>(alpha, gain, clamp);
  const int64_t R = strip_rows<acc_t>(pl, taps.fh, taps.fw);
  const int64_t strips = (pl.Hd + R - 1) / R;
  const scalar_t* gy = plan.grad.const_data_ptr<scalar_t>();
  const uint8_t* mask = M == FirSave::Mask ? plan.saved.const_data_ptr<uint8_t>() : nullptr;
  const scalar_t* zs = M == FirSave::Z ? plan.saved.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* gz = plan.gz.defined() ? plan.gz.const_data_ptr<scalar_t>() : nullptr;
  scalar_t* gx = plan.gx.mutable_data_ptr<scalar_t>();
  const int64_t ls = pl.Ws * pl.CB, ld = pl.Wd * pl.CB;
  const int64_t items = pl.P * strips;
  // Partial bias sums: [items, CB].
  std::vector<acc_t> partial(plan.reduce ? items * pl.CB : 0, acc_t(0));

  const acc_t alpha_v = ap.alpha, gain_v = ap.gain, inv_gain_v = ap.inv_gain, clamp_v = ap.clamp;
  const bool has_clamp = ap.has_clamp;
  using Vec = at::vec::Vectorized<acc_t>;
  constexpr int64_t kV = Vec::size();
  constexpr bool kDirect = std::is_same_v<scalar_t, acc_t>;
  auto load = [&](int64_t item, int64_t p, int64_t r, acc_t* __restrict__ row, bool owned) {
    const int64_t off = (p * pl.Hs + r) * ls;
    // dy (working layout) into row: channels_last work from a contiguous grad gathers row
    // r of every channel.
    if (pl.src_nchw) {
      transpose_rows(gy + p * pl.C * pl.Hs * pl.Ws + r * pl.Ws, pl.C, pl.Ws, pl.Hs * pl.Ws, row,
                     pl.C);
    } else {
      at::vec::convert(gy + off, row, ls);
    }
    const uint8_t* __restrict__ mr = M == FirSave::Mask ? mask + off : nullptr;
    const scalar_t* __restrict__ zr = M == FirSave::Z ? zs + off : nullptr;
    if constexpr (M == FirSave::Mask) {
      // dy/dz depends only on the mask byte: bit 1 = live, bit 0 = z > 0.
      const acc_t fpos = fir_grad_factor<A, M>(acc_t(0), uint8_t(3), alpha_v, gain_v, inv_gain_v,
                                               clamp_v, has_clamp);
      const acc_t fneg = fir_grad_factor<A, M>(acc_t(0), uint8_t(2), alpha_v, gain_v, inv_gain_v,
                                               clamp_v, has_clamp);
      for (int64_t e = 0; e < ls; ++e) {
        const uint8_t m = mr[e];
        row[e] *= (m & 2) ? ((m & 1) ? fpos : fneg) : acc_t(0);
      }
    } else if constexpr (M == FirSave::None) {
      for (int64_t e = 0; e < ls; ++e) row[e] *= gain_v;
    } else {
      int64_t e = 0;
      if constexpr (kDirect) {
        const Vec valpha(alpha_v), vgain(gain_v), vinv(inv_gain_v), vclamp(clamp_v);
        for (; e + kV <= ls; e += kV) {
          const Vec f = fir_grad_factor<A, M>(Vec::loadu(zr + e), uint8_t(0), valpha, vgain, vinv,
                                              vclamp, has_clamp);
          (Vec::loadu(row + e) * f).store(row + e);
        }
      }
      for (; e < ls; ++e) {
        row[e] = row[e] *
                 fir_grad_factor<A, M>(static_cast<acc_t>(zr[e]), uint8_t(0), alpha_v, gain_v,
                                       inv_gain_v, clamp_v, has_clamp);
      }
    }
    if (gz != nullptr) {
      const scalar_t* gzr = gz + off;
      for (int64_t e = 0; e < ls; ++e) row[e] += static_cast<acc_t>(gzr[e]);
    }
    if (owned && plan.reduce) {
      acc_t* ps = partial.data() + item * pl.CB;
      if (pl.CB == 1) {
        // Vector partial sums, combined in a fixed order (deterministic per item).
        Vec vs(acc_t(0));
        int64_t e = 0;
        for (; e + kV <= ls; e += kV) vs = vs + Vec::loadu(row + e);
        alignas(64) acc_t lanes[kV];
        vs.store(lanes);
        acc_t s = 0;
        for (int64_t k = 0; k < kV; ++k) s += lanes[k];
        for (; e < ls; ++e) s += row[e];
        ps[0] += s;
      } else {
        for (int64_t w = 0; w < pl.Ws; ++w) {
          const acc_t* rw = row + w * pl.CB;
          for (int64_t c = 0; c < pl.CB; ++c) ps[c] += rw[c];
        }
      }
    }
  };
  auto store = [&](int64_t p, int64_t h, const acc_t* __restrict__ a, acc_t*) {
    scalar_t* __restrict__ out = gx + (p * pl.Hd + h) * ld;
    at::vec::convert(a, out, ld);
  };
  fir_drive<acc_t>(pl, taps, strips, load, store);
  if (plan.reduce) {
    // Fixed-order reduction of the per-item sums.
    const auto acc_type = std::is_same_v<acc_t, double> ? at::kDouble : at::kFloat;
    at::Tensor part =
        at::from_blob(partial.data(), {items * pl.CB}, at::TensorOptions().dtype(acc_type));
    at::Tensor sums = pl.cl ? part.view({pl.P * strips, pl.C}).sum(0)
                            : part.view({plan.g.N, pl.C, strips}).sum(at::IntArrayRef{0, 2});
    plan.gb.copy_(sums);
  }
}

}  // namespace

void fir_forward(FirForwardPlan& plan, double alpha, double gain, double clamp) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.x.scalar_type(),
                                  "fir_bias_act_cpu", [&] {
    FG_DISPATCH_ACT(plan.act, [&] {
      // Only the (act, save mode) pairs that fir_save_mode can produce are instantiated.
      if constexpr (!(kAct == Act::Linear || kAct == Act::ReLU || kAct == Act::LReLU)) {
        forward_impl<scalar_t, kAct, FirSave::Z>(plan, alpha, gain, clamp);
      } else if constexpr (kAct == Act::Linear) {
        if (plan.save == FirSave::None) {
          forward_impl<scalar_t, kAct, FirSave::None>(plan, alpha, gain, clamp);
        } else {
          forward_impl<scalar_t, kAct, FirSave::Mask>(plan, alpha, gain, clamp);
        }
      } else {
        forward_impl<scalar_t, kAct, FirSave::Mask>(plan, alpha, gain, clamp);
      }
    });
  });
}

void fir_grad(FirGradPlan& plan, double alpha, double gain, double clamp) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, plan.grad.scalar_type(),
                                  "fir_bias_act_grad_cpu", [&] {
    FG_DISPATCH_ACT(plan.act, [&] {
      if constexpr (!(kAct == Act::Linear || kAct == Act::ReLU || kAct == Act::LReLU)) {
        grad_impl<scalar_t, kAct, FirSave::Z>(plan, alpha, gain, clamp);
      } else if constexpr (kAct == Act::Linear) {
        if (plan.save == FirSave::None) {
          grad_impl<scalar_t, kAct, FirSave::None>(plan, alpha, gain, clamp);
        } else {
          grad_impl<scalar_t, kAct, FirSave::Mask>(plan, alpha, gain, clamp);
        }
      } else {
        grad_impl<scalar_t, kAct, FirSave::Mask>(plan, alpha, gain, clamp);
      }
    });
  });
}

}  // namespace fastgan::cpu::FG_CPU_KERNEL_NS
