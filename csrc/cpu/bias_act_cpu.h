// Interface between the CPU op wrapper (bias_act.cpp, which handles tensors) and the
// CPU kernels, compiled once per instruction set (bias_act_default.cpp, bias_act_avx2.cpp)
// from the same template (bias_act_kernel.h). Kernels see raw pointers and sizes only.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>

#include "../common/activations.h"

namespace fastgan::cpu {

// The tensor, in memory order, is split into `rows` rows of `row_len` elements.
//   row mode  (vec_bias == false): row r uses the scalar bias b[r % channels].
//   vec mode  (vec_bias == true):  every row uses the bias vector b[0 .. row_len).
// b may be null (no bias).
struct RowLayout {
  int64_t rows = 0;
  int64_t row_len = 0;
  int64_t channels = 1;
  bool vec_bias = false;
  // vec mode with a reduction: rows are processed in fixed chunks of chunk_rows, so that
  // the partial sums (and so the result) do not depend on the number of threads.
  int64_t chunk_rows = 1;
};

struct ActArgs {
  Act act = Act::Linear;
  double alpha = 0.0;
  double gain = 1.0;
  double clamp = -1.0;  // < 0: none
};

struct ForwardArgs {
  c10::ScalarType dtype;
  RowLayout layout;
  ActArgs act;
  const void* x = nullptr;
  const void* b = nullptr;
  void* y = nullptr;
};

struct GradArgs {
  c10::ScalarType dtype;
  RowLayout layout;
  ActArgs act;
  const void* grad = nullptr;
  const void* ref = nullptr;  // x (bias added in the kernel) or y
  const void* b = nullptr;    // only with ref = x
  void* out = nullptr;
  bool ref_is_y = false;
  int order = 1;
  // Optional per-row (row mode, [rows]) or per-chunk (vec mode, [n_chunks, row_len]) sums
  // of `out`, in float (double for float64 inputs). Null: no reduction.
  void* partial_sums = nullptr;
};

#define FG_DECLARE_CPU_KERNELS(NS)                \
  namespace NS {                                  \
  void bias_act_forward(const ForwardArgs& args); \
  void bias_act_grad(const GradArgs& args);       \
  }

FG_DECLARE_CPU_KERNELS(kernels_default)
FG_DECLARE_CPU_KERNELS(kernels_avx2)

}  // namespace fastgan::cpu
