// Vector helpers shared by the per-instruction-set CPU kernel templates (bias_act_kernel.h,
// batch_norm_act_kernel.h): the compute type, loads and stores of one step of elements as
// vectors of it, the dtype switch, and the dispatch to register-held column sums. Included
// by a kernel header after FG_CPU_KERNEL_NS (and the ISA, for AVX2) is set.
#pragma once

#ifndef FG_CPU_KERNEL_NS
#error "define FG_CPU_KERNEL_NS before including vec_lanes.h"
#endif

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/core/ScalarType.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <type_traits>
#include <utility>

namespace fastgan::cpu::FG_CPU_KERNEL_NS {
namespace {

using at::vec::Vectorized;

// The compute type: double for double, float for float and the half types.
template <typename scalar_t>
using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// Loads and stores one step of scalar_t elements as kParts vectors of the compute type.
template <typename scalar_t>
struct Lanes {
  using A = acc_t<scalar_t>;
  using AVec = Vectorized<A>;
  static constexpr bool kReduced = !std::is_same_v<scalar_t, A>;
  static constexpr int64_t kStep = kReduced ? Vectorized<scalar_t>::size() : AVec::size();
  static constexpr int kParts = static_cast<int>(kStep / AVec::size());

  static void load(const scalar_t* p, AVec (&out)[kParts]) {
    if constexpr (kReduced) {
      auto [lo, hi] = at::vec::convert_to_float<scalar_t>(Vectorized<scalar_t>::loadu(p));
      out[0] = lo;
      out[1] = hi;
    } else {
      out[0] = AVec::loadu(p);
    }
  }
  static void store(scalar_t* p, const AVec (&in)[kParts]) {
    if constexpr (kReduced) {
      at::vec::convert_from_float<scalar_t>(in[0], in[1]).store(p);
    } else {
      in[0].store(p);
    }
  }
};

// Runs f(tag) with a value of the kernel dtype t (float, double, half, bfloat16).
template <typename F>
void dispatch_dtype(c10::ScalarType t, const char* op, F&& f) {
  switch (t) {
    case c10::ScalarType::Float: f(float{}); break;
    case c10::ScalarType::Double: f(double{}); break;
    case c10::ScalarType::Half: f(c10::Half{}); break;
    case c10::ScalarType::BFloat16: f(c10::BFloat16{}); break;
    default: TORCH_CHECK(false, op, ": unsupported dtype ", t);
  }
}

// Column sums held in registers across rows (summing into memory chains every row on
// store-to-load forwarding: with channels_last's short rows that cost ~2x a whole pass)
// work for rows of at most this many compute vectors.
constexpr int kMaxRegVecs = 8;

// Calls f(std::integral_constant<int, NV>{}) when a row of `len` elements is NV whole
// compute vectors, NV <= kMaxRegVecs and a whole number of steps; returns whether it did.
template <typename scalar_t, typename F>
bool with_row_vectors(int64_t len, F&& f) {
  using L = Lanes<scalar_t>;
  constexpr int64_t W = L::AVec::size();
  if (len % L::kStep != 0 || len / W > kMaxRegVecs) return false;
  bool done = false;
  auto run = [&](auto nv) {
    if constexpr (decltype(nv)::value % L::kParts == 0) {
      f(nv);
      done = true;
    }
  };
  switch (len / W) {
    case 1: run(std::integral_constant<int, 1>{}); break;
    case 2: run(std::integral_constant<int, 2>{}); break;
    case 3: run(std::integral_constant<int, 3>{}); break;
    case 4: run(std::integral_constant<int, 4>{}); break;
    case 5: run(std::integral_constant<int, 5>{}); break;
    case 6: run(std::integral_constant<int, 6>{}); break;
    case 7: run(std::integral_constant<int, 7>{}); break;
    case 8: run(std::integral_constant<int, 8>{}); break;
    default: break;
  }
  return done;
}

}  // namespace
}  // namespace fastgan::cpu::FG_CPU_KERNEL_NS
