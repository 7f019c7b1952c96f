// Host-side pieces of bias_act shared by the CPU and CUDA implementations: argument
// checks with messages that name the argument, the memory layout description and the
// compile-time dispatch over activations.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "activations.h"

namespace fastgan {

inline constexpr std::array<std::string_view, kNumActs> kActNames = {
    "linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish", "gelu"};

inline Act parse_act(std::string_view name) {
  for (int i = 0; i < kNumActs; ++i) {
    if (kActNames[i] == name) return static_cast<Act>(i);
  }
  TORCH_CHECK_VALUE(false, "bias_act: unknown act '", std::string(name),
                    "'; expected one of linear, relu, lrelu, tanh, sigmoid, elu, selu, "
                    "softplus, swish, gelu");
}

inline bool is_supported_dtype(c10::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// Checks shared by every bias_act entry point. `what` names the tensor argument.
inline void check_float_tensor(const at::Tensor& t, const char* op, const char* what) {
  TORCH_CHECK_TYPE(is_supported_dtype(t.scalar_type()), op, ": ", what,
                   " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
}

inline void check_bias(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim,
                       const char* op) {
  if (!b.has_value() || !b->defined()) return;
  const at::Tensor& bias = *b;
  TORCH_CHECK_INDEX(dim >= 0 && dim < x.dim(), op, ": dim=", dim,
                    " is out of range for x with ", x.dim(), " dimensions");
  TORCH_CHECK_VALUE(bias.dim() == 1, op, ": b must be 1-D, got shape ", bias.sizes());
  TORCH_CHECK_VALUE(bias.size(0) == x.size(dim), op, ": b has ", bias.size(0),
                    " elements but x.shape[", dim, "] is ", x.size(dim));
  TORCH_CHECK_TYPE(bias.scalar_type() == x.scalar_type(), op, ": b has dtype ",
                   bias.scalar_type(), " but x has dtype ", x.scalar_type());
  TORCH_CHECK(bias.device() == x.device(), op, ": b is on ", bias.device(), " but x is on ",
              x.device());
}

inline void check_params(double alpha, double gain, double clamp, const char* op) {
  TORCH_CHECK_VALUE(std::isfinite(alpha), op, ": alpha must be finite, got ", alpha);
  TORCH_CHECK_VALUE(std::isfinite(gain), op, ": gain must be finite, got ", gain);
  // clamp < 0 means "no clamp" at the op level; the Python API maps None to -1.
  TORCH_CHECK_VALUE(!std::isnan(clamp), op, ": clamp must not be NaN");
}

// A dense tensor processed in memory order as [outer, C, inner]: element at memory offset
// o belongs to channel (o / inner) % C. Valid for every non-overlapping, dense layout
// (contiguous, channels_last, any permutation), whose strides are products of sizes.
struct DenseLayout {
  int64_t outer = 1;
  int64_t channels = 1;
  int64_t inner = 1;
  int64_t numel = 0;
};

inline DenseLayout dense_layout(const at::Tensor& dense, int64_t dim) {
  DenseLayout l;
  l.numel = dense.numel();
  if (dense.dim() == 0 || dim < 0 || dim >= dense.dim() || dense.size(dim) <= 1 ||
      l.numel == 0) {
    l.inner = std::max<int64_t>(l.numel, 1);
    return l;
  }
  l.channels = dense.size(dim);
  l.inner = dense.stride(dim);
  l.outer = l.numel / (l.channels * l.inner);
  TORCH_INTERNAL_ASSERT(l.outer * l.channels * l.inner == l.numel,
                        "bias_act: unexpected layout for sizes ", dense.sizes(), " strides ",
                        dense.strides());
  return l;
}

// Brings t into a dense layout (a copy only when it is not dense already), choosing the
// layout empty_like(t) would: this keeps the real kernels and the fake kernels in step.
inline at::Tensor make_dense(const at::Tensor& t) {
  if (t.is_non_overlapping_and_dense()) return t;
  return t.contiguous(t.suggest_memory_format());
}

// Gives `t` exactly the strides of `like` (same shape), copying only when they differ.
inline at::Tensor match_strides(const at::Tensor& t, const at::Tensor& like) {
  if (t.strides() == like.strides()) return t;
  at::Tensor out = at::empty_like(like, t.options());
  out.copy_(t);
  return out;
}

}  // namespace fastgan


namespace fastgan {

// Shared tensor preparation for the CPU and CUDA bias_act ops: validated arguments,
// dense inputs, allocated outputs. The kernels then work on raw memory in order.
struct ForwardPlan {
  Act act;
  at::Tensor x;  // dense
  at::Tensor b;  // contiguous, or undefined
  at::Tensor y;  // empty_like(x): same strides as x
  DenseLayout layout;
};

inline ForwardPlan plan_forward(const at::Tensor& x, const std::optional<at::Tensor>& b,
                                int64_t dim, std::string_view act, double alpha, double gain,
                                double clamp) {
  constexpr const char* op = "bias_act";
  ForwardPlan p;
  p.act = parse_act(act);
  check_float_tensor(x, op, "x");
  check_bias(x, b, dim, op);
  check_params(alpha, gain, clamp, op);
  const bool has_b = b.has_value() && b->defined();
  p.x = make_dense(x);
  if (has_b) p.b = b->contiguous();
  p.y = at::empty_like(p.x);
  p.layout = dense_layout(p.x, has_b ? dim : -1);
  return p;
}

struct GradPlan {
  Act act;
  at::Tensor grad;  // dense, same strides as ref
  at::Tensor ref;   // dense
  at::Tensor b;     // contiguous, or undefined
  at::Tensor out;   // empty_like(ref)
  at::Tensor sums;  // [x.shape[dim]] when reduce, else [0]
  DenseLayout layout;
};

inline GradPlan plan_grad(const at::Tensor& grad, const at::Tensor& ref,
                          const std::optional<at::Tensor>& b, int64_t dim, std::string_view act,
                          double alpha, double gain, double clamp, bool ref_is_y, int64_t order,
                          bool reduce) {
  constexpr const char* op = "bias_act_grad";
  GradPlan p;
  p.act = parse_act(act);
  check_float_tensor(grad, op, "grad");
  check_float_tensor(ref, op, "ref");
  TORCH_CHECK_VALUE(grad.sizes() == ref.sizes(), op, ": grad has shape ", grad.sizes(),
                    " but ref has shape ", ref.sizes());
  TORCH_CHECK_TYPE(grad.scalar_type() == ref.scalar_type(), op, ": grad has dtype ",
                   grad.scalar_type(), " but ref has dtype ", ref.scalar_type());
  TORCH_CHECK(grad.device() == ref.device(), op, ": grad is on ", grad.device(),
              " but ref is on ", ref.device());
  TORCH_CHECK_VALUE(order == 1 || order == 2, op, ": order must be 1 or 2, got ", order);
  const bool has_b = b.has_value() && b->defined();
  TORCH_CHECK_VALUE(!(has_b && ref_is_y), op, ": b must be None when ref is the output y");
  TORCH_CHECK_VALUE(!ref_is_y || act_derivative_from_output(p.act), op, ": act '",
                    std::string(act), "' needs the input x as ref, not the output y");
  check_bias(ref, b, dim, op);
  if (reduce) {
    TORCH_CHECK_INDEX(dim >= 0 && dim < ref.dim(), op, ": dim=", dim,
                      " is out of range for a tensor with ", ref.dim(), " dimensions");
  }
  check_params(alpha, gain, clamp, op);
  p.ref = make_dense(ref);
  p.grad = match_strides(grad, p.ref);
  if (has_b) p.b = b->contiguous();
  p.out = at::empty_like(p.ref);
  p.layout = dense_layout(p.ref, (has_b || reduce) ? dim : -1);
  p.sums = reduce ? at::zeros({ref.size(dim)}, ref.options()) : at::empty({0}, ref.options());
  return p;
}

// Sums per channel from the kernels' partial sums: [outer * C] (rows of `inner` elements,
// row = o * C + c) or [chunks, C * inner] (vector-bias mode).
inline at::Tensor reduce_partial_sums(const at::Tensor& partial, const DenseLayout& l,
                                      bool vec_mode) {
  if (vec_mode) {
    return partial.sum(0).view({l.channels, l.inner}).sum(1);
  }
  return partial.view({l.outer, l.channels}).sum(0);
}

}  // namespace fastgan
