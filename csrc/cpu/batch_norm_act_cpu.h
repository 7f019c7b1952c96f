// Interface between the CPU op wrapper of batch_norm_act (batch_norm_act.cpp: tensors,
// checks, per-channel coefficients) and its kernels, compiled once per instruction set
// (batch_norm_act_default.cpp, batch_norm_act_avx2.cpp) from batch_norm_act_kernel.h.
//
// The tensor is walked in memory order as rows:
//   row mode (vec_mode false): row r = (o, c) holds `row_len` = inner elements of channel
//                              r % channels; per-channel coefficients are scalars.
//   vec mode (vec_mode true):  row r = o holds row_len = channels * inner elements
//                              (channels_last: inner = 1); coefficients are per column.
// Coefficient arrays hold one value per channel (row mode) or per column (vec mode), in the
// compute type (double for float64 tensors, float otherwise).
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>

#include "../common/activations.h"

namespace fastgan::cpu {

struct BnRows {
  int64_t rows = 0;
  int64_t row_len = 0;
  int64_t channels = 1;
  bool vec_mode = false;
  // vec mode reductions: rows are summed in fixed chunks of chunk_rows (the result does not
  // depend on the number of threads).
  int64_t chunk_rows = 1;
};

// Which per-element formula a pass runs.
enum class BnPass : int {
  // reduce: acc1 += x - p, acc2 += (x - p)^2                  (p: a per-channel shift)
  Stats = 0,
  // reduce: g = dy * act'((x - r) * p + q); acc1 += g, acc2 += g * (x - r)
  GradSums = 1,
  // map: out = act((x - r) * p + q)
  Forward = 2,
  // map: g as above; out = s * g + t * (x - r) + u
  GradInput = 3,
};

struct BnArgs {
  c10::ScalarType dtype;
  BnRows layout;
  BnPass pass = BnPass::Forward;
  Act act = Act::Linear;
  double alpha = 0.0, gain = 1.0, clamp = -1.0;
  const void* x = nullptr;
  const void* dy = nullptr;  // GradSums, GradInput
  void* out = nullptr;       // Forward, GradInput
  // coefficient arrays (compute type), see BnPass; unused ones may be null
  const void* p = nullptr;
  const void* q = nullptr;
  const void* r = nullptr;
  const void* s = nullptr;
  const void* t = nullptr;
  const void* u = nullptr;
  // reduce passes: double partial sums, [rows] each (row mode) or [chunks * row_len] each
  // (vec mode), written by the kernel.
  double* partial1 = nullptr;
  double* partial2 = nullptr;
};

#define FG_DECLARE_BN_KERNELS(NS)           \
  namespace NS {                            \
  void batch_norm_act_pass(const BnArgs& args); \
  }

FG_DECLARE_BN_KERNELS(kernels_default)
FG_DECLARE_BN_KERNELS(kernels_avx2)

}  // namespace fastgan::cpu
