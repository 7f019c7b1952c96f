// Host-side pieces of batch_norm_act shared by its CPU kernel wrapper and its composite
// (any-device) implementation: argument checks that name the argument.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>
#include <string_view>

#include "bias_act_common.h"

namespace fastgan {

inline bool defined(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// A per-channel parameter: 1-D of x.shape[1] elements, on x's device, floating point.
inline void check_channel_param(const at::Tensor& x, const std::optional<at::Tensor>& t,
                                const char* op, const char* what) {
  if (!defined(t)) return;
  TORCH_CHECK_VALUE(t->dim() == 1 && t->size(0) == x.size(1), op, ": ", what,
                    " must be 1-D with x.shape[1] = ", x.size(1), " elements, got shape ",
                    t->sizes());
  check_float_tensor(*t, op, what);
  TORCH_CHECK(t->device() == x.device(), op, ": ", what, " is on ", t->device(),
              " but x is on ", x.device());
}

// weight and bias: x's dtype, or float32 for a float16 / bfloat16 x (autocast keeps
// parameters in float32).
inline void check_affine_dtype(const at::Tensor& x, const std::optional<at::Tensor>& t,
                               const char* op, const char* what) {
  if (!defined(t)) return;
  const auto dt = t->scalar_type();
  const bool half_x = x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16;
  TORCH_CHECK_TYPE(dt == x.scalar_type() || (half_x && dt == at::kFloat), op, ": ",
                   what, " has dtype ", dt, " but x has dtype ", x.scalar_type(),
                   " (allowed: x's dtype, or float32 for a float16/bfloat16 x)");
}

// x (N, C, ...) and its optional per-channel weight and bias: the checks both ops share.
inline void check_x_weight_bias(const at::Tensor& x, const std::optional<at::Tensor>& weight,
                                const std::optional<at::Tensor>& bias, const char* op) {
  check_float_tensor(x, op, "x");
  TORCH_CHECK_VALUE(x.dim() >= 2, op, ": x must have at least 2 dimensions (N, C, ...), got shape ",
                    x.sizes());
  check_channel_param(x, weight, op, "weight");
  check_channel_param(x, bias, op, "bias");
  check_affine_dtype(x, weight, op, "weight");
  check_affine_dtype(x, bias, op, "bias");
}

// Returns the parsed activation.
inline Act check_batch_norm_act_args(const at::Tensor& x, const std::optional<at::Tensor>& weight,
                                     const std::optional<at::Tensor>& bias,
                                     const std::optional<at::Tensor>& mean,
                                     const std::optional<at::Tensor>& var, bool training,
                                     double eps, std::string_view act, double alpha, double gain,
                                     double clamp) {
  constexpr const char* op = "batch_norm_act";
  const Act a = parse_act(act);
  check_x_weight_bias(x, weight, bias, op);
  check_channel_param(x, mean, op, "running_mean");
  check_channel_param(x, var, op, "running_var");
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps >= 0, op, ": eps must be finite and >= 0, got ", eps);
  check_params(alpha, gain, clamp, op);
  if (training) {
    const int64_t per_channel = x.size(1) > 0 ? x.numel() / x.size(1) : 0;
    TORCH_CHECK_VALUE(per_channel > 1 || x.numel() == 0, op,
                      ": expected more than 1 value per channel when training, got x of shape ",
                      x.sizes());
  } else {
    TORCH_CHECK_VALUE(defined(mean) && defined(var), op,
                      ": running_mean and running_var are required when training=False");
  }
  return a;
}

inline Act check_batch_norm_act_backward_args(const at::Tensor& grad, const at::Tensor& x,
                                              const std::optional<at::Tensor>& weight,
                                              const std::optional<at::Tensor>& bias,
                                              const at::Tensor& save_mean,
                                              const at::Tensor& save_invstd, std::string_view act,
                                              double alpha, double gain, double clamp) {
  constexpr const char* op = "batch_norm_act_backward";
  const Act a = parse_act(act);
  check_x_weight_bias(x, weight, bias, op);
  check_float_tensor(grad, op, "grad");
  TORCH_CHECK_VALUE(grad.sizes() == x.sizes(), op, ": grad has shape ", grad.sizes(),
                    " but x has shape ", x.sizes());
  TORCH_CHECK_TYPE(grad.scalar_type() == x.scalar_type(), op, ": grad has dtype ",
                   grad.scalar_type(), " but x has dtype ", x.scalar_type());
  TORCH_CHECK(grad.device() == x.device(), op, ": grad is on ", grad.device(), " but x is on ",
              x.device());
  check_channel_param(x, save_mean, op, "save_mean");
  check_channel_param(x, save_invstd, op, "save_invstd");
  check_params(alpha, gain, clamp, op);
  return a;
}

}  // namespace fastgan
