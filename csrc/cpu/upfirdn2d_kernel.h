// CPU kernels of upfirdn2d, compiled once per instruction set. The including file defines
// FG_CPU_KERNEL_NS (the namespace of this copy); the AVX2 copy also enables the target.
//
// Each axis is a polyphase 1-D resampler: output o of an axis with factors (up, down),
// leading padding p0 and correlation taps c[0..K) reads the upsampled coordinate
// j = o * down - p0 + k, which is nonzero only when j % up == 0, at input i = j / up. Only
// those taps are visited, so zero insertion costs nothing.
//
// Separable filters run as two passes over blocks of output rows: the x pass writes the
// input rows the block needs, resampled along x, into a float scratch (small enough to
// stay in cache), then the y pass combines scratch rows into output rows. 2-D filters run
// directly. The vector axis is the contiguous one: w for NCHW (lanes == 1), the channels
// for channels_last (lanes == C), where every tap is a multiply-add over a run of lanes.
// Accumulation is in float (double for float64).
#pragma once

#ifndef FG_CPU_KERNEL_NS
#error "define FG_CPU_KERNEL_NS before including upfirdn2d_kernel.h"
#endif

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "upfirdn2d_cpu.h"

namespace fastgan::cpu::FG_CPU_KERNEL_NS {
namespace {

inline int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
inline int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

// One axis of the resampler.
struct Axis {
  int64_t up, down, p0, taps, n_in, n_out;
};

// The taps of output o that land on input samples: weights w[] and input indices idx[].
template <typename acc_t>
inline int taps_of(const Axis& a, const acc_t* c, int64_t o, acc_t* w, int64_t* idx) {
  const int64_t j0 = o * a.down - a.p0;
  int n = 0;
  for (int64_t k = floor_mod(-j0, a.up); k < a.taps; k += a.up) {
    const int64_t i = (j0 + k) / a.up;  // exact
    if (i >= 0 && i < a.n_in) {
      w[n] = c[k];
      idx[n] = i;
      ++n;
    }
  }
  return n;
}

// out[l] (+)= sum_j w[j] * p[j][l] for l < len, N taps known at compile time.
template <int N, bool ADD, typename acc_t, typename in_t, typename out_t>
inline void comb_n(int64_t len, const acc_t* w, const in_t* const* p, out_t* __restrict out) {
  acc_t ww[N > 0 ? N : 1];
  const in_t* pp[N > 0 ? N : 1];
  for (int j = 0; j < N; ++j) {
    ww[j] = w[j];
    pp[j] = p[j];
  }
#pragma omp simd
  for (int64_t l = 0; l < len; ++l) {
    acc_t s = ADD ? static_cast<acc_t>(out[l]) : acc_t(0);
    for (int j = 0; j < N; ++j) s += ww[j] * static_cast<acc_t>(pp[j][l]);
    out[l] = static_cast<out_t>(s);
  }
}

template <int N, bool ADD, typename acc_t, typename in_t, typename out_t>
inline bool comb_dispatch(int n, int64_t len, const acc_t* w, const in_t* const* p, out_t* out) {
  if (n != N) return false;
  comb_n<N, ADD>(len, w, p, out);
  return true;
}

// out = (ADD ? out : 0) + sum over n taps, any n. Over 8 taps, partial sums go to the
// acc_t scratch so that half outputs are rounded once.
template <bool ADD, typename acc_t, typename in_t, typename out_t>
void combine(int n, int64_t len, const acc_t* w, const in_t* const* p, out_t* out,
             std::vector<acc_t>& scratch) {
  if (n <= 8) {
    comb_dispatch<0, ADD>(n, len, w, p, out) || comb_dispatch<1, ADD>(n, len, w, p, out) ||
        comb_dispatch<2, ADD>(n, len, w, p, out) || comb_dispatch<3, ADD>(n, len, w, p, out) ||
        comb_dispatch<4, ADD>(n, len, w, p, out) || comb_dispatch<5, ADD>(n, len, w, p, out) ||
        comb_dispatch<6, ADD>(n, len, w, p, out) || comb_dispatch<7, ADD>(n, len, w, p, out) ||
        comb_dispatch<8, ADD>(n, len, w, p, out);
    return;
  }
  if (static_cast<int64_t>(scratch.size()) < len) scratch.resize(len);
  acc_t* s = scratch.data();
  if (ADD) {
    for (int64_t l = 0; l < len; ++l) s[l] = static_cast<acc_t>(out[l]);
  } else {
    std::fill(s, s + len, acc_t(0));
  }
  for (int j0 = 0; j0 < n; j0 += 8) {
    const int m = std::min(8, n - j0);
    combine<true>(m, len, w + j0, p + j0, s, scratch);  // m <= 8: no recursion into here
  }
  for (int64_t l = 0; l < len; ++l) out[l] = static_cast<out_t>(s[l]);
}

// ---- x pass on a contiguous row (lanes == 1) ----------------------------------------

// xb[i - lo] = x[i] for i in [lo, hi), zero outside the row: the zero padding in one place,
// so the loops below need no bounds checks.
template <typename acc_t>
struct PaddedRow {
  int64_t lo = 0, hi = 0;
  std::vector<acc_t> buf;
};

template <typename acc_t>
PaddedRow<acc_t> padded_row_bounds(const Axis& a) {
  PaddedRow<acc_t> r;
  const int64_t jmin = -a.p0;
  const int64_t jmax = (a.n_out - 1) * a.down - a.p0 + a.taps - 1;
  r.lo = std::min<int64_t>(0, floor_div(jmin, a.up) - 1);
  r.hi = std::max<int64_t>(a.n_in, floor_div(jmax, a.up) + 2);
  r.buf.assign(r.hi - r.lo, acc_t(0));
  return r;
}

template <typename acc_t, typename scalar_t>
inline void load_row(PaddedRow<acc_t>& r, const scalar_t* x, int64_t n) {
  acc_t* b = r.buf.data() - r.lo;
  for (int64_t i = 0; i < n; ++i) b[i] = static_cast<acc_t>(x[i]);
}

// out[o] (+)= sum_k c[k] * xu[o * down - p0 + k] over the whole row; xb holds the row.
template <bool ADD, typename acc_t>
void xpass_contig(const Axis& a, const acc_t* c, const PaddedRow<acc_t>& r, acc_t* out,
                  std::vector<acc_t>& ph) {
  const acc_t* xb = r.buf.data() - r.lo;  // xb[i] valid for i in [lo, hi)
  const int64_t n = a.n_out;
  if (!ADD) std::fill(out, out + n, acc_t(0));
  if (a.up == 1) {
    for (int64_t k = 0; k < a.taps; ++k) {
      const acc_t w = c[k];
      const acc_t* src = xb + (k - a.p0);
      if (a.down == 1) {
#pragma omp simd
        for (int64_t o = 0; o < n; ++o) out[o] += w * src[o];
      } else {
        const int64_t d = a.down;
        for (int64_t o = 0; o < n; ++o) out[o] += w * src[d * o];
      }
    }
    return;
  }
  if (a.down == 1) {
    // Phase r holds outputs o = up * m + r; its taps are k = kf + up * t, reading
    // x[m + base + t].
    const int64_t u = a.up;
    const int64_t m_count = (n + u - 1) / u;
    ph.assign(u * m_count, acc_t(0));
    for (int64_t r = 0; r < u; ++r) {
      acc_t* dst = ph.data() + r * m_count;
      const int64_t kf = floor_mod(a.p0 - r, u);
      const int64_t base = (r - a.p0 + kf) / u;  // exact
      for (int64_t k = kf, t = 0; k < a.taps; k += u, ++t) {
        const acc_t w = c[k];
        const acc_t* src = xb + base + t;
#pragma omp simd
        for (int64_t m = 0; m < m_count; ++m) dst[m] += w * src[m];
      }
    }
    if (u == 2) {
      const acc_t* p0 = ph.data();
      const acc_t* p1 = ph.data() + m_count;
      const int64_t pairs = n / 2;
#pragma omp simd
      for (int64_t m = 0; m < pairs; ++m) {
        out[2 * m] += p0[m];
        out[2 * m + 1] += p1[m];
      }
      if (n & 1) out[n - 1] += p0[pairs];
    } else {
      for (int64_t o = 0; o < n; ++o) out[o] += ph[(o % u) * m_count + o / u];
    }
    return;
  }
  // General up and down.
  for (int64_t o = 0; o < n; ++o) {
    const int64_t j0 = o * a.down - a.p0;
    acc_t s = 0;
    for (int64_t k = floor_mod(-j0, a.up); k < a.taps; k += a.up) s += c[k] * xb[(j0 + k) / a.up];
    out[o] += s;
  }
}

// out[o] (+)= sum_k c[k] * x[2 * o + k - p0] (up 1, down 2) straight from the input row.
// The row is first split into its even and odd samples (zero outside the row), so every
// tap is a unit-stride multiply-add: tap k reads phase q = (k - p0) mod 2 at index
// o + (k - p0 - q) / 2. A stride-2 read does not vectorize.
template <bool ADD, typename acc_t, typename scalar_t>
void xpass_down2(const Axis& a, const acc_t* c, const scalar_t* x, acc_t* out,
                 std::vector<acc_t>& ph) {
  const int64_t n = a.n_out;
  const int64_t m0 = floor_div(-a.p0, 2);
  const int64_t m1 = n + floor_div(a.taps - 1 - a.p0, 2);
  const int64_t M = m1 - m0;
  ph.assign(2 * M, acc_t(0));
  acc_t* even = ph.data() - m0;
  acc_t* odd = ph.data() + M - m0;
  const int64_t lo = std::max<int64_t>(m0, 0);
  const int64_t pairs = std::min<int64_t>(m1, a.n_in / 2);
  for (int64_t m = lo; m < pairs; ++m) {
    even[m] = static_cast<acc_t>(x[2 * m]);
    odd[m] = static_cast<acc_t>(x[2 * m + 1]);
  }
  if ((a.n_in & 1) && a.n_in / 2 >= lo && a.n_in / 2 < m1) {
    even[a.n_in / 2] = static_cast<acc_t>(x[a.n_in - 1]);
  }
  if (!ADD) std::fill(out, out + n, acc_t(0));
  for (int64_t k = 0; k < a.taps; ++k) {
    const acc_t w = c[k];
    const int64_t sk = k - a.p0;
    const int64_t q = floor_mod(sk, 2);
    const acc_t* src = (q ? odd : even) + (sk - q) / 2;
#pragma omp simd
    for (int64_t o = 0; o < n; ++o) out[o] += w * src[o];
  }
}

template <typename scalar_t, typename acc_t>
struct Kernel {
  const UpfirdnArgs& a;
  Axis ax, ay;
  std::vector<acc_t> cx, cy;  // taps in acc_t

  explicit Kernel(const UpfirdnArgs& args) : a(args) {
    ax = {a.upx, a.downx, a.padx0, a.fw, a.in_w, a.out_w};
    ay = {a.upy, a.downy, a.pady0, a.fh, a.in_h, a.out_h};
    cx.assign(a.fx.begin(), a.fx.end());
    cy.assign(a.fy.begin(), a.fy.end());
  }

  // Maximum taps per output along an axis.
  static int64_t max_taps(const Axis& s) { return (s.taps + s.up - 1) / s.up; }

  void run() {
    const int64_t rows_target = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, a.out_w * a.lanes));
    const int64_t block = std::min<int64_t>(a.out_h, std::max<int64_t>(8, rows_target));
    const int64_t nblocks = (a.out_h + block - 1) / block;
    // At least ~64K output values per thread: below that, waking threads costs more than
    // it saves (and tiny calls, as in gradcheck, stay single-threaded).
    const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, block * a.out_w * a.lanes));
    at::parallel_for(0, a.batch * nblocks, grain, [&](int64_t begin, int64_t end) {
      Scratch s;
      for (int64_t t = begin; t < end; ++t) {
        const int64_t b = t / nblocks;
        const int64_t oy0 = (t % nblocks) * block;
        const int64_t oy1 = std::min(a.out_h, oy0 + block);
        if (a.separable && a.lanes == 1 && ay.down > ay.up) {
          separable_block_y_first(b, oy0, oy1, s);
        } else if (a.separable) {
          separable_block(b, oy0, oy1, s);
        } else {
          full_block(b, oy0, oy1, s);
        }
      }
    });
  }

  struct Scratch {
    std::vector<acc_t> tmp, acc, ph, big;
    PaddedRow<acc_t> row;
    bool row_ready = false;
    std::vector<const acc_t*> pa;
    std::vector<const scalar_t*> ps;
    std::vector<acc_t> w;
    std::vector<int64_t> idx;
  };

  const scalar_t* in_plane(int64_t b) const {
    return static_cast<const scalar_t*>(a.x) + b * a.in_h * a.in_w * a.lanes;
  }
  scalar_t* out_plane(int64_t b) const {
    return static_cast<scalar_t*>(a.y) + b * a.out_h * a.out_w * a.lanes;
  }

  // Resamples input row `row` (w * lanes values) along x with taps c into out
  // (out_w * lanes acc_t values), adding when ADD.
  template <bool ADD>
  void xpass(const scalar_t* row, const acc_t* c, acc_t* out, Scratch& s) {
    Axis axc = ax;
    if (a.lanes == 1 && ax.up == 1 && ax.down == 2) {
      xpass_down2<ADD>(axc, c, row, out, s.ph);
      return;
    }
    if (a.lanes == 1) {
      if (!s.row_ready) {
        s.row = padded_row_bounds<acc_t>(axc);
        s.row_ready = true;
      }
      load_row(s.row, row, a.in_w);
      xpass_contig<ADD>(axc, c, s.row, out, s.ph);
      return;
    }
    const int64_t L = a.lanes;
    s.w.resize(ax.taps);
    s.idx.resize(ax.taps);
    s.ps.resize(ax.taps);
    for (int64_t ox = 0; ox < a.out_w; ++ox) {
      const int n = taps_of(ax, c, ox, s.w.data(), s.idx.data());
      for (int j = 0; j < n; ++j) s.ps[j] = row + s.idx[j] * L;
      combine<ADD>(n, L, s.w.data(), s.ps.data(), out + ox * L, s.big);
    }
  }

  void separable_block(int64_t b, int64_t oy0, int64_t oy1, Scratch& s) {
    const int64_t rowlen = a.out_w * a.lanes;
    const int64_t T = std::max<int64_t>(1, max_taps(ay));
    s.w.resize(std::max(T, ax.taps));
    s.idx.resize(std::max(T, ax.taps));
    // Input rows this block reads.
    int64_t lo = a.in_h, hi = -1;
    std::vector<acc_t> wy(T);
    std::vector<int64_t> iy(T);
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const int n = taps_of(ay, cy.data(), oy, wy.data(), iy.data());
      for (int j = 0; j < n; ++j) {
        lo = std::min(lo, iy[j]);
        hi = std::max(hi, iy[j]);
      }
    }
    scalar_t* out = out_plane(b);
    if (hi < lo) {  // every output row of the block is padding
      std::fill(out + oy0 * rowlen, out + oy1 * rowlen, scalar_t(0));
      return;
    }
    s.tmp.resize((hi - lo + 1) * rowlen);
    const scalar_t* in = in_plane(b);
    for (int64_t i = lo; i <= hi; ++i) {
      xpass<false>(in + i * a.in_w * a.lanes, cx.data(), s.tmp.data() + (i - lo) * rowlen, s);
    }
    s.pa.resize(T);
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const int n = taps_of(ay, cy.data(), oy, wy.data(), iy.data());
      for (int j = 0; j < n; ++j) s.pa[j] = s.tmp.data() + (iy[j] - lo) * rowlen;
      combine<false>(n, rowlen, wy.data(), s.pa.data(), out + oy * rowlen, s.big);
    }
  }

  // NCHW with y downsampling: the y pass first (each output row combines whole input rows,
  // unit stride), then the x pass on that one row: the x pass, whose cost is mostly per
  // row on small images, then runs on out_h rows instead of the in_h the other order needs.
  void separable_block_y_first(int64_t b, int64_t oy0, int64_t oy1, Scratch& s) {
    const int64_t W = a.in_w;
    const int64_t T = std::max<int64_t>(1, max_taps(ay));
    std::vector<acc_t> wy(T);
    std::vector<int64_t> iy(T);
    s.ps.resize(T);
    s.acc.resize(W);
    s.tmp.resize(a.out_w);
    const scalar_t* in = in_plane(b);
    scalar_t* out = out_plane(b);
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const int n = taps_of(ay, cy.data(), oy, wy.data(), iy.data());
      for (int j = 0; j < n; ++j) s.ps[j] = in + iy[j] * W;
      combine<false>(n, W, wy.data(), s.ps.data(), s.acc.data(), s.big);
      if (ax.up == 1 && ax.down == 2) {
        xpass_down2<false>(ax, cx.data(), s.acc.data(), s.tmp.data(), s.ph);
      } else {
        if (!s.row_ready) {
          s.row = padded_row_bounds<acc_t>(ax);
          s.row_ready = true;
        }
        load_row(s.row, s.acc.data(), W);
        xpass_contig<false>(ax, cx.data(), s.row, s.tmp.data(), s.ph);
      }
      scalar_t* dst = out + oy * a.out_w;
      for (int64_t l = 0; l < a.out_w; ++l) dst[l] = static_cast<scalar_t>(s.tmp[l]);
    }
  }

  void full_block(int64_t b, int64_t oy0, int64_t oy1, Scratch& s) {
    const int64_t rowlen = a.out_w * a.lanes;
    const int64_t L = a.lanes;
    const scalar_t* in = in_plane(b);
    scalar_t* out = out_plane(b);
    const int64_t T = std::max<int64_t>(1, max_taps(ay));
    std::vector<acc_t> wy(T);
    std::vector<int64_t> iy(T), ky(T);
    // Which filter row each y tap is: recovered from the tap's index.
    auto y_taps = [&](int64_t oy) {
      const int64_t j0 = oy * ay.down - ay.p0;
      int n = 0;
      for (int64_t k = floor_mod(-j0, ay.up); k < ay.taps; k += ay.up) {
        const int64_t i = (j0 + k) / ay.up;
        if (i >= 0 && i < ay.n_in) {
          iy[n] = i;
          ky[n] = k;
          ++n;
        }
      }
      return n;
    };
    if (L == 1) {
      s.acc.resize(rowlen);
      for (int64_t oy = oy0; oy < oy1; ++oy) {
        const int n = y_taps(oy);
        std::fill(s.acc.begin(), s.acc.end(), acc_t(0));
        for (int j = 0; j < n; ++j) {
          xpass<true>(in + iy[j] * a.in_w, cx.data() + ky[j] * a.fw, s.acc.data(), s);
        }
        scalar_t* dst = out + oy * rowlen;
        for (int64_t l = 0; l < rowlen; ++l) dst[l] = static_cast<scalar_t>(s.acc[l]);
      }
      return;
    }
    // channels_last: every output pixel is a sum of tap-weighted channel vectors.
    const int64_t TX = std::max<int64_t>(1, max_taps(ax));
    std::vector<acc_t> wx(ax.taps), w2(T * TX);
    std::vector<int64_t> ix(ax.taps);
    std::vector<const scalar_t*> p2(T * TX);
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const int ny = y_taps(oy);
      for (int64_t ox = 0; ox < a.out_w; ++ox) {
        const int64_t j0 = ox * ax.down - ax.p0;
        int n = 0;
        for (int64_t k = floor_mod(-j0, ax.up); k < ax.taps; k += ax.up) {
          const int64_t i = (j0 + k) / ax.up;
          if (i < 0 || i >= ax.n_in) continue;
          for (int j = 0; j < ny; ++j) {
            w2[n] = cx[ky[j] * a.fw + k];
            p2[n] = in + (iy[j] * a.in_w + i) * L;
            ++n;
          }
        }
        combine<false>(n, L, w2.data(), p2.data(), out + oy * rowlen + ox * L, s.big);
      }
    }
  }
};

}  // namespace

void upfirdn2d(const UpfirdnArgs& a) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.dtype, "upfirdn2d_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    Kernel<scalar_t, acc_t>(a).run();
  });
}

}  // namespace fastgan::cpu::FG_CPU_KERNEL_NS
