// CPU kernels of batch_norm_act, compiled once per instruction set. The including file
// defines FG_CPU_KERNEL_NS (and, for AVX2, includes avx2_target.h first).
//
// Four passes (BnPass): two reductions (batch statistics; the backward's per-channel sums)
// and two maps (the forward output; the input gradient). Each walks the tensor in memory
// order as rows (BnRows) with at::vec::Vectorized of the compute type; the activation math
// is common/activations.h's, shared with bias_act and the CUDA kernels. Reductions add
// float lanes over bounded spans, then double: partial sums per row (row mode) or per
// fixed chunk of rows (vec mode), so results do not depend on the number of threads.
#pragma once

#ifndef FG_CPU_KERNEL_NS
#error "define FG_CPU_KERNEL_NS before including batch_norm_act_kernel.h"
#endif

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "vec_lanes.h"
#include "vec_math.h"  // before activations.h

#include "../common/activations.h"
#include "batch_norm_act_cpu.h"

namespace fastgan::cpu::FG_CPU_KERNEL_NS {
namespace {

template <typename V>
struct Params {
  V alpha, gain, inv_gain, clamp;
  bool has_clamp;
};

template <typename V, typename A>
Params<V> params_as(const ActParams<A>& p) {
  return {V(p.alpha), V(p.gain), V(p.inv_gain), V(p.clamp), p.has_clamp};
}

// The six coefficients of one element (see BnPass).
template <typename V>
struct Coef {
  V p, q, r, s, t, u;
};

// g = dy * d y / d z at z = (x - r) * p + q (zero where the output is clamped). x - r
// first: exact enough when |mean| >> std, where x * p + (q - r * p) would cancel.
template <Act kAct, typename V>
inline V grad_z(V x, V dy, const Coef<V>& c, const Params<V>& prm) {
  const V z = (x - c.r) * c.p + c.q;
  return dy * bias_act_grad_factor<kAct>(z, prm.alpha, prm.gain, prm.inv_gain, prm.clamp,
                                         prm.has_clamp, false, 1);
}

// Map passes: the output element.
template <Act kAct, BnPass kPass, typename V>
inline V map_elem(V x, V dy, const Coef<V>& c, const Params<V>& prm) {
  if constexpr (kPass == BnPass::Forward) {
    (void)dy;
    return bias_act_forward_elem<kAct>((x - c.r) * c.p + c.q, prm.alpha, prm.gain, prm.clamp,
                                       prm.has_clamp);
  } else {
    const V g = grad_z<kAct>(x, dy, c, prm);
    return c.s * g + c.t * (x - c.r) + c.u;
  }
}

// Reduce passes: the two contributions of an element.
template <Act kAct, BnPass kPass, typename V>
inline void reduce_elem(V x, V dy, const Coef<V>& c, const Params<V>& prm, V& a1, V& a2) {
  if constexpr (kPass == BnPass::Stats) {
    (void)dy;
    (void)prm;
    const V d = x - c.p;
    a1 = a1 + d;
    a2 = a2 + d * d;
  } else {
    const V g = grad_z<kAct>(x, dy, c, prm);
    a1 = a1 + g;
    a2 = a2 + g * (x - c.r);
  }
}

template <typename A>
struct CoefPtrs {
  const A *p, *q, *r, *s, *t, *u;
};

template <typename A>
inline A at_or_zero(const A* ptr, int64_t i) {
  return ptr ? ptr[i] : A(0);
}

// Scalar coefficients of column / channel i.
template <typename A>
inline Coef<A> coef_at(const CoefPtrs<A>& cp, int64_t i) {
  return {at_or_zero(cp.p, i), at_or_zero(cp.q, i), at_or_zero(cp.r, i),
          at_or_zero(cp.s, i), at_or_zero(cp.t, i), at_or_zero(cp.u, i)};
}

template <typename A>
inline Vectorized<A> vload_or_zero(const A* ptr, int64_t i) {
  return ptr ? Vectorized<A>::loadu(ptr + i) : Vectorized<A>(A(0));
}

template <typename A>
inline Coef<Vectorized<A>> vcoef_at(const CoefPtrs<A>& cp, int64_t i) {
  return {vload_or_zero(cp.p, i), vload_or_zero(cp.q, i), vload_or_zero(cp.r, i),
          vload_or_zero(cp.s, i), vload_or_zero(cp.t, i), vload_or_zero(cp.u, i)};
}

template <typename A>
inline Coef<Vectorized<A>> broadcast(const Coef<A>& c) {
  using AV = Vectorized<A>;
  return {AV(c.p), AV(c.q), AV(c.r), AV(c.s), AV(c.t), AV(c.u)};
}

template <typename A>
inline A hsum(const Vectorized<A>& v) {
  A lanes[Vectorized<A>::size()];
  v.store(lanes);
  A total = A(0);
  for (int64_t k = 0; k < Vectorized<A>::size(); ++k) total += lanes[k];
  return total;
}

// out[0..n) for one span. kVec: coefficients per column (cp, from column 0 of the span);
// else the scalar coefficients cs.
template <Act kAct, BnPass kPass, bool kVec, typename scalar_t>
void map_span(const scalar_t* x, const scalar_t* dy, scalar_t* out, int64_t n,
              const CoefPtrs<acc_t<scalar_t>>& cp, const Coef<acc_t<scalar_t>>& cs,
              const Params<acc_t<scalar_t>>& prm) {
  using L = Lanes<scalar_t>;
  using A = typename L::A;
  using AVec = typename L::AVec;
  constexpr bool kDy = kPass == BnPass::GradInput;
  const Params<AVec> vprm{AVec(prm.alpha), AVec(prm.gain), AVec(prm.inv_gain), AVec(prm.clamp),
                          prm.has_clamp};
  const Coef<AVec> vcs = broadcast(cs);
  int64_t i = 0;
  for (; i + L::kStep <= n; i += L::kStep) {
    AVec xv[L::kParts], gv[L::kParts];
    L::load(x + i, xv);
    if constexpr (kDy) L::load(dy + i, gv);
    for (int k = 0; k < L::kParts; ++k) {
      const Coef<AVec> c = kVec ? vcoef_at(cp, i + k * AVec::size()) : vcs;
      xv[k] = map_elem<kAct, kPass>(xv[k], kDy ? gv[k] : AVec(A(0)), c, vprm);
    }
    L::store(out + i, xv);
  }
  for (; i < n; ++i) {
    const Coef<A> c = kVec ? coef_at(cp, i) : cs;
    const A g = kDy ? static_cast<A>(dy[i]) : A(0);
    out[i] = static_cast<scalar_t>(map_elem<kAct, kPass>(static_cast<A>(x[i]), g, c, prm));
  }
}

// Reduce one span. kVec: adds each column's contributions to col1/col2 (compute type, from
// column 0 of the span); else returns the span's totals in *tot1, *tot2.
template <Act kAct, BnPass kPass, bool kVec, typename scalar_t>
void reduce_span(const scalar_t* x, const scalar_t* dy, int64_t n,
                 const CoefPtrs<acc_t<scalar_t>>& cp, const Coef<acc_t<scalar_t>>& cs,
                 const Params<acc_t<scalar_t>>& prm, acc_t<scalar_t>* col1,
                 acc_t<scalar_t>* col2, double* tot1, double* tot2) {
  using L = Lanes<scalar_t>;
  using A = typename L::A;
  using AVec = typename L::AVec;
  constexpr bool kDy = kPass == BnPass::GradSums;
  const Params<AVec> vprm{AVec(prm.alpha), AVec(prm.gain), AVec(prm.inv_gain), AVec(prm.clamp),
                          prm.has_clamp};
  const Coef<AVec> vcs = broadcast(cs);
  AVec s1(A(0)), s2(A(0));
  int64_t i = 0;
  for (; i + L::kStep <= n; i += L::kStep) {
    AVec xv[L::kParts], gv[L::kParts];
    L::load(x + i, xv);
    if constexpr (kDy) L::load(dy + i, gv);
    for (int k = 0; k < L::kParts; ++k) {
      const AVec g = kDy ? gv[k] : AVec(A(0));
      if constexpr (kVec) {
        const int64_t col = i + k * AVec::size();
        AVec a1 = AVec::loadu(col1 + col), a2 = AVec::loadu(col2 + col);
        reduce_elem<kAct, kPass>(xv[k], g, vcoef_at(cp, col), vprm, a1, a2);
        a1.store(col1 + col);
        a2.store(col2 + col);
      } else {
        reduce_elem<kAct, kPass>(xv[k], g, vcs, vprm, s1, s2);
      }
    }
  }
  A t1 = A(0), t2 = A(0);
  for (; i < n; ++i) {
    const A g = kDy ? static_cast<A>(dy[i]) : A(0);
    if constexpr (kVec) {
      reduce_elem<kAct, kPass>(static_cast<A>(x[i]), g, coef_at(cp, i), prm, col1[i], col2[i]);
    } else {
      reduce_elem<kAct, kPass>(static_cast<A>(x[i]), g, cs, prm, t1, t2);
    }
  }
  if constexpr (!kVec) {
    *tot1 = static_cast<double>(hsum(s1)) + static_cast<double>(t1);
    *tot2 = static_cast<double>(hsum(s2)) + static_cast<double>(t2);
  }
}

// Vec-mode reduction over rows of exactly NV compute vectors, column sums in registers
// across the rows (see with_row_vectors in vec_lanes.h).

template <Act kAct, BnPass kPass, typename scalar_t, int NV>
void reduce_rows_in_registers(const scalar_t* x, const scalar_t* dy, int64_t r0, int64_t r1,
                              const CoefPtrs<acc_t<scalar_t>>& cp,
                              const Params<acc_t<scalar_t>>& prm, acc_t<scalar_t>* col1,
                              acc_t<scalar_t>* col2) {
  using L = Lanes<scalar_t>;
  using A = typename L::A;
  using AVec = typename L::AVec;
  static_assert(NV % L::kParts == 0, "whole steps only");
  constexpr bool kDy = kPass == BnPass::GradSums;
  constexpr int64_t kLen = NV * AVec::size();
  const Params<AVec> vprm{AVec(prm.alpha), AVec(prm.gain), AVec(prm.inv_gain), AVec(prm.clamp),
                          prm.has_clamp};
  AVec a1[NV], a2[NV];
  for (int j = 0; j < NV; ++j) a1[j] = a2[j] = AVec(A(0));
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t off = row * kLen;
    for (int j = 0; j < NV / L::kParts; ++j) {
      const int64_t i = j * L::kStep;
      AVec xv[L::kParts], gv[L::kParts];
      L::load(x + off + i, xv);
      if constexpr (kDy) L::load(dy + off + i, gv);
      for (int k = 0; k < L::kParts; ++k) {
        const int v = j * L::kParts + k;
        reduce_elem<kAct, kPass>(xv[k], kDy ? gv[k] : AVec(A(0)), vcoef_at(cp, v * AVec::size()),
                                 vprm, a1[v], a2[v]);
      }
    }
  }
  for (int j = 0; j < NV; ++j) {
    a1[j].store(col1 + j * AVec::size());
    a2[j].store(col2 + j * AVec::size());
  }
}

// Runs reduce_rows_in_registers when a row is NV <= kMaxRegVecs compute vectors.
template <Act kAct, BnPass kPass, typename scalar_t>
bool reduce_rows_fast(int64_t len, const scalar_t* x, const scalar_t* dy, int64_t r0, int64_t r1,
                      const CoefPtrs<acc_t<scalar_t>>& cp, const Params<acc_t<scalar_t>>& prm,
                      acc_t<scalar_t>* col1, acc_t<scalar_t>* col2) {
  return with_row_vectors<scalar_t>(len, [&](auto nv) {
    reduce_rows_in_registers<kAct, kPass, scalar_t, decltype(nv)::value>(x, dy, r0, r1, cp, prm,
                                                                         col1, col2);
  });
}

// Elements per parallel task (maps) and per reduction chunk (vec mode).
constexpr int64_t kGrain = 32768;
// Row-mode reductions add at most this many elements in float lanes before going to double.
constexpr int64_t kSegment = 4096;

template <Act kAct, BnPass kPass, typename scalar_t>
void run_pass(const BnArgs& a) {
  using A = acc_t<scalar_t>;
  const auto* x = static_cast<const scalar_t*>(a.x);
  const auto* dy = static_cast<const scalar_t*>(a.dy);
  auto* out = static_cast<scalar_t*>(a.out);
  const BnRows& l = a.layout;
  const CoefPtrs<A> cp{static_cast<const A*>(a.p), static_cast<const A*>(a.q),
                       static_cast<const A*>(a.r), static_cast<const A*>(a.s),
                       static_cast<const A*>(a.t), static_cast<const A*>(a.u)};
  const ActParams<A> ap = make_act_params<A>(a.alpha, a.gain, a.clamp);
  const Params<A> prm = params_as<A>(ap);
  constexpr bool kReduce = kPass == BnPass::Stats || kPass == BnPass::GradSums;
  const int64_t len = l.row_len;

  if constexpr (!kReduce) {
    const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(len, 1));
    at::parallel_for(0, l.rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t off = row * len;
        if (l.vec_mode) {
          map_span<kAct, kPass, true>(x + off, dy ? dy + off : nullptr, out + off, len, cp,
                                      Coef<A>{}, prm);
        } else {
          map_span<kAct, kPass, false>(x + off, dy ? dy + off : nullptr, out + off, len, cp,
                                       coef_at(cp, row % l.channels), prm);
        }
      }
    });
  } else if (l.vec_mode) {
    const int64_t chunks = (l.rows + l.chunk_rows - 1) / l.chunk_rows;
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      std::vector<A> col1(len), col2(len);
      for (int64_t chunk = c0; chunk < c1; ++chunk) {
        const int64_t r0 = chunk * l.chunk_rows;
        const int64_t r1 = std::min(l.rows, (chunk + 1) * l.chunk_rows);
        if (!reduce_rows_fast<kAct, kPass>(len, x, dy, r0, r1, cp, prm, col1.data(), col2.data())) {
          std::fill(col1.begin(), col1.end(), A(0));
          std::fill(col2.begin(), col2.end(), A(0));
          for (int64_t row = r0; row < r1; ++row) {
            const int64_t off = row * len;
            reduce_span<kAct, kPass, true>(x + off, dy ? dy + off : nullptr, len, cp, Coef<A>{},
                                           prm, col1.data(), col2.data(), nullptr, nullptr);
          }
        }
        double* p1 = a.partial1 + chunk * len;
        double* p2 = a.partial2 + chunk * len;
        for (int64_t j = 0; j < len; ++j) {
          p1[j] = static_cast<double>(col1[j]);
          p2[j] = static_cast<double>(col2[j]);
        }
      }
    });
  } else {
    const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(len, 1));
    at::parallel_for(0, l.rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t off = row * len;
        const Coef<A> cs = coef_at(cp, row % l.channels);
        double t1 = 0.0, t2 = 0.0;
        for (int64_t s0 = 0; s0 < len; s0 += kSegment) {
          const int64_t n = std::min(kSegment, len - s0);
          double u1 = 0.0, u2 = 0.0;
          reduce_span<kAct, kPass, false>(x + off + s0, dy ? dy + off + s0 : nullptr, n, cp, cs,
                                          prm, nullptr, nullptr, &u1, &u2);
          t1 += u1;
          t2 += u2;
        }
        a.partial1[row] = t1;
        a.partial2[row] = t2;
      }
    });
  }
}

template <BnPass kPass>
void run_typed(const BnArgs& args) {
  dispatch_dtype(args.dtype, "batch_norm_act", [&](auto tag) {
    using scalar_t = decltype(tag);
    if constexpr (kPass == BnPass::Stats) {
      run_pass<Act::Linear, kPass, scalar_t>(args);  // no activation involved
    } else {
      FG_DISPATCH_ACT(args.act, [&] { run_pass<kAct, kPass, scalar_t>(args); });
    }
  });
}

}  // namespace

void batch_norm_act_pass(const BnArgs& args) {
  switch (args.pass) {
    case BnPass::Stats: run_typed<BnPass::Stats>(args); break;
    case BnPass::GradSums: run_typed<BnPass::GradSums>(args); break;
    case BnPass::Forward: run_typed<BnPass::Forward>(args); break;
    case BnPass::GradInput: run_typed<BnPass::GradInput>(args); break;
  }
}

}  // namespace fastgan::cpu::FG_CPU_KERNEL_NS
