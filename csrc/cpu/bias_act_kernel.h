// CPU kernels of bias_act, compiled once per instruction set. The including file defines
// FG_CPU_KERNEL_NS (the namespace of this copy) and, for AVX2, CPU_CAPABILITY_AVX2 and
// CPU_CAPABILITY before including any header.
//
// Work is split in memory order into rows (see RowLayout). Inner loops run on
// at::vec::Vectorized of the compute type (float for half types), with no division or
// modulo per element; the formulas come from common/activations.h, shared with CUDA.
#pragma once

#ifndef FG_CPU_KERNEL_NS
#error "define FG_CPU_KERNEL_NS before including bias_act_kernel.h"
#endif

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <type_traits>

#include "vec_lanes.h"
#include "vec_math.h"  // before activations.h

#include "../common/activations.h"
#include "bias_act_cpu.h"

namespace fastgan::cpu::FG_CPU_KERNEL_NS {
namespace {

// y[0..n) = act(x + bias) for one span; bias is bvec[i] if bvec, else bscalar.
template <Act kAct, typename scalar_t>
void forward_span(const scalar_t* x, scalar_t* y, int64_t n, const scalar_t* bvec,
                  acc_t<scalar_t> bscalar, const ActParams<acc_t<scalar_t>>& p) {
  using L = Lanes<scalar_t>;
  using A = typename L::A;
  using AVec = typename L::AVec;
  const AVec valpha(p.alpha), vgain(p.gain), vclamp(p.clamp), vbias(bscalar);
  int64_t i = 0;
  for (; i + L::kStep <= n; i += L::kStep) {
    AVec v[L::kParts];
    L::load(x + i, v);
    AVec bv[L::kParts];
    if (bvec) L::load(bvec + i, bv);
    for (int k = 0; k < L::kParts; ++k) {
      AVec z = v[k] + (bvec ? bv[k] : vbias);
      v[k] = bias_act_forward_elem<kAct>(z, valpha, vgain, vclamp, p.has_clamp);
    }
    L::store(y + i, v);
  }
  for (; i < n; ++i) {
    A z = static_cast<A>(x[i]) + (bvec ? static_cast<A>(bvec[i]) : bscalar);
    y[i] = static_cast<scalar_t>(
        bias_act_forward_elem<kAct>(z, p.alpha, p.gain, p.clamp, p.has_clamp));
  }
}

// out[0..n) = grad * factor(ref (+ bias)); adds out to col_sums[0..n) (vec mode) or to
// *row_sum (row mode) when those are given.
template <Act kAct, typename scalar_t>
void grad_span(const scalar_t* g, const scalar_t* ref, scalar_t* out, int64_t n,
               const scalar_t* bvec, acc_t<scalar_t> bscalar, const ActParams<acc_t<scalar_t>>& p,
               bool ref_is_y, int order, acc_t<scalar_t>* col_sums,
               acc_t<scalar_t>* row_sum) {
  using L = Lanes<scalar_t>;
  using A = typename L::A;
  using AVec = typename L::AVec;
  const AVec valpha(p.alpha), vgain(p.gain), vinv(p.inv_gain), vclamp(p.clamp),
      vbias(bscalar);
  AVec vsum(A(0));
  int64_t i = 0;
  for (; i + L::kStep <= n; i += L::kStep) {
    AVec gv[L::kParts], rv[L::kParts];
    L::load(g + i, gv);
    L::load(ref + i, rv);
    AVec bv[L::kParts];
    if (bvec) L::load(bvec + i, bv);
    for (int k = 0; k < L::kParts; ++k) {
      AVec r = ref_is_y ? rv[k] : rv[k] + (bvec ? bv[k] : vbias);
      gv[k] = gv[k] * bias_act_grad_factor<kAct>(r, valpha, vgain, vinv, vclamp, p.has_clamp,
                                                 ref_is_y, order);
    }
    L::store(out + i, gv);
    if (col_sums) {
      for (int k = 0; k < L::kParts; ++k) {
        A* s = col_sums + i + k * AVec::size();
        (AVec::loadu(s) + gv[k]).store(s);
      }
    } else if (row_sum) {
      for (int k = 0; k < L::kParts; ++k) vsum = vsum + gv[k];
    }
  }
  A tail_sum = A(0);
  for (; i < n; ++i) {
    A r = static_cast<A>(ref[i]);
    if (!ref_is_y) r += bvec ? static_cast<A>(bvec[i]) : bscalar;
    A v = static_cast<A>(g[i]) * bias_act_grad_factor<kAct>(r, p.alpha, p.gain, p.inv_gain,
                                                            p.clamp, p.has_clamp, ref_is_y,
                                                            order);
    out[i] = static_cast<scalar_t>(v);
    if (col_sums) col_sums[i] += v;
    tail_sum += v;
  }
  if (row_sum) {
    A lanes[AVec::size()];
    vsum.store(lanes);
    A total = A(0);
    for (int64_t k = 0; k < AVec::size(); ++k) total += lanes[k];
    *row_sum += total + tail_sum;
  }
}

// Elements per parallel task: large enough to amortize scheduling, small enough to
// split a (32, 256, 64, 64) tensor over many threads.
constexpr int64_t kGrain = 32768;

template <Act kAct, typename scalar_t>
void forward_impl(const ForwardArgs& a) {
  using A = acc_t<scalar_t>;
  const auto* x = static_cast<const scalar_t*>(a.x);
  const auto* b = static_cast<const scalar_t*>(a.b);
  auto* y = static_cast<scalar_t*>(a.y);
  const RowLayout& l = a.layout;
  const auto p = make_act_params<A>(a.act.alpha, a.act.gain, a.act.clamp);
  if (l.vec_bias) {
    const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(l.row_len, 1));
    at::parallel_for(0, l.rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        forward_span<kAct>(x + r * l.row_len, y + r * l.row_len, l.row_len, b, A(0), p);
      }
    });
    return;
  }
  // Row mode: parallel over the flat range; a task walks its rows, one division per task.
  const int64_t numel = l.rows * l.row_len;
  at::parallel_for(0, numel, kGrain, [&](int64_t begin, int64_t end) {
    int64_t row = begin / l.row_len;
    int64_t pos = begin - row * l.row_len;
    int64_t c = row % l.channels;
    for (int64_t i = begin; i < end;) {
      const int64_t n = std::min(end - i, l.row_len - pos);
      const A bias = b ? static_cast<A>(b[c]) : A(0);
      forward_span<kAct>(x + i, y + i, n, static_cast<const scalar_t*>(nullptr), bias, p);
      i += n;
      pos = 0;
      if (++c == l.channels) c = 0;
    }
  });
}

// Vec mode with a reduction, rows of exactly NV compute vectors: the column sums stay in
// registers across a chunk's rows (see with_row_vectors in vec_lanes.h).
template <Act kAct, typename scalar_t, int NV>
void grad_rows_in_registers(const scalar_t* g, const scalar_t* ref, scalar_t* out, int64_t r0,
                            int64_t r1, const scalar_t* bvec, const ActParams<acc_t<scalar_t>>& p,
                            bool ref_is_y, int order, acc_t<scalar_t>* col) {
  using L = Lanes<scalar_t>;
  using A = typename L::A;
  using AVec = typename L::AVec;
  static_assert(NV % L::kParts == 0, "whole steps only");
  constexpr int64_t kLen = NV * AVec::size();
  const AVec valpha(p.alpha), vgain(p.gain), vinv(p.inv_gain), vclamp(p.clamp);
  AVec acc[NV];
  for (int j = 0; j < NV; ++j) acc[j] = AVec(A(0));
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t off = r * kLen;
    for (int j = 0; j < NV / L::kParts; ++j) {
      const int64_t i = j * L::kStep;
      AVec gv[L::kParts], rv[L::kParts], bv[L::kParts];
      L::load(g + off + i, gv);
      L::load(ref + off + i, rv);
      if (bvec) L::load(bvec + i, bv);
      for (int k = 0; k < L::kParts; ++k) {
        const AVec rr = ref_is_y ? rv[k] : (bvec ? rv[k] + bv[k] : rv[k]);
        gv[k] = gv[k] * bias_act_grad_factor<kAct>(rr, valpha, vgain, vinv, vclamp, p.has_clamp,
                                                   ref_is_y, order);
        acc[j * L::kParts + k] = acc[j * L::kParts + k] + gv[k];
      }
      L::store(out + off + i, gv);
    }
  }
  for (int j = 0; j < NV; ++j) acc[j].store(col + j * AVec::size());
}

// Runs grad_rows_in_registers when the row is NV <= kMaxRegVecs compute vectors; returns
// false otherwise.
template <Act kAct, typename scalar_t>
bool grad_rows_fast(int64_t len, const scalar_t* g, const scalar_t* ref, scalar_t* out,
                    int64_t r0, int64_t r1, const scalar_t* bvec,
                    const ActParams<acc_t<scalar_t>>& p, bool ref_is_y, int order,
                    acc_t<scalar_t>* col) {
  return with_row_vectors<scalar_t>(len, [&](auto nv) {
    grad_rows_in_registers<kAct, scalar_t, decltype(nv)::value>(g, ref, out, r0, r1, bvec, p,
                                                                ref_is_y, order, col);
  });
}

template <Act kAct, typename scalar_t>
void grad_impl(const GradArgs& a) {
  using A = acc_t<scalar_t>;
  const auto* g = static_cast<const scalar_t*>(a.grad);
  const auto* ref = static_cast<const scalar_t*>(a.ref);
  const auto* b = static_cast<const scalar_t*>(a.b);
  auto* out = static_cast<scalar_t*>(a.out);
  auto* sums = static_cast<A*>(a.partial_sums);
  const RowLayout& l = a.layout;
  const auto p = make_act_params<A>(a.act.alpha, a.act.gain, a.act.clamp);
  if (l.vec_bias) {
    const int64_t n_chunks = (l.rows + l.chunk_rows - 1) / l.chunk_rows;
    at::parallel_for(0, n_chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t chunk = c0; chunk < c1; ++chunk) {
        A* col = sums ? sums + chunk * l.row_len : nullptr;
        const int64_t r1 = std::min(l.rows, (chunk + 1) * l.chunk_rows);
        if (col && grad_rows_fast<kAct>(l.row_len, g, ref, out, chunk * l.chunk_rows, r1, b, p,
                                        a.ref_is_y, a.order, col)) {
          continue;
        }
        if (col) std::fill(col, col + l.row_len, A(0));
        for (int64_t r = chunk * l.chunk_rows; r < r1; ++r) {
          const int64_t off = r * l.row_len;
          grad_span<kAct>(g + off, ref + off, out + off, l.row_len, b, A(0), p, a.ref_is_y,
                          a.order, col, static_cast<A*>(nullptr));
        }
      }
    });
    return;
  }
  if (sums) {
    // One sum per row: parallel over whole rows so that no row is split between tasks.
    const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(l.row_len, 1));
    at::parallel_for(0, l.rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t off = r * l.row_len;
        const A bias = b ? static_cast<A>(b[r % l.channels]) : A(0);
        sums[r] = A(0);
        grad_span<kAct>(g + off, ref + off, out + off, l.row_len,
                        static_cast<const scalar_t*>(nullptr), bias, p, a.ref_is_y, a.order,
                        static_cast<A*>(nullptr), sums + r);
      }
    });
    return;
  }
  const int64_t numel = l.rows * l.row_len;
  at::parallel_for(0, numel, kGrain, [&](int64_t begin, int64_t end) {
    int64_t row = begin / l.row_len;
    int64_t pos = begin - row * l.row_len;
    int64_t c = row % l.channels;
    for (int64_t i = begin; i < end;) {
      const int64_t n = std::min(end - i, l.row_len - pos);
      const A bias = b ? static_cast<A>(b[c]) : A(0);
      grad_span<kAct>(g + i, ref + i, out + i, n, static_cast<const scalar_t*>(nullptr), bias,
                      p, a.ref_is_y, a.order, static_cast<A*>(nullptr),
                      static_cast<A*>(nullptr));
      i += n;
      pos = 0;
      if (++c == l.channels) c = 0;
    }
  });
}

}  // namespace

void bias_act_forward(const ForwardArgs& args) {
  dispatch_dtype(args.dtype, "bias_act", [&](auto tag) {
    using scalar_t = decltype(tag);
    FG_DISPATCH_ACT(args.act.act, [&] { forward_impl<kAct, scalar_t>(args); });
  });
}

void bias_act_grad(const GradArgs& args) {
  dispatch_dtype(args.dtype, "bias_act", [&](auto tag) {
    using scalar_t = decltype(tag);
    FG_DISPATCH_ACT(args.act.act, [&] { grad_impl<kAct, scalar_t>(args); });
  });
}

}  // namespace fastgan::cpu::FG_CPU_KERNEL_NS
