// fastgan::batch_norm_act and its backward op: the composite implementation (every device
// without a fused kernel: ATen's batch norm, then the bias_act op) and the autograd kernel.
//
// The autograd node saves x, weight, bias and the batch statistics. Its backward is the op
// batch_norm_act_backward (CPU: two fused passes). Under create_graph it is built from
// differentiable ops instead -- the statistics recomputed from x when training, the
// activation derivative through bias_act_grad (its own autograd) -- so gradient penalties
// through a discriminator with batch norm get exact higher-order gradients.
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/native_batch_norm.h>
#include <ATen/ops/var_mean.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "../common/batch_norm_act_common.h"
#include "dispatch.h"

namespace fastgan::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using ops::TensorQuad;
using ops::TensorTriple;

std::string_view sv(c10::string_view s) { return std::string_view(s.data(), s.size()); }

at::ScalarType acc_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

std::vector<int64_t> reduce_dims(const at::Tensor& x) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

// [C] -> [1, C, 1, ...] for broadcasting against x.
at::Tensor per_channel(const at::Tensor& v, const at::Tensor& x) {
  std::vector<int64_t> shape(x.dim(), 1);
  shape[1] = -1;
  return v.reshape(shape);
}

// Batch statistics in the compute type (biased variance), differentiable.
std::pair<at::Tensor, at::Tensor> batch_stats(const at::Tensor& x, double eps) {
  auto [var, mean] = at::var_mean(x.to(acc_type(x.scalar_type())), reduce_dims(x), 0, false);
  return {mean, (var + eps).rsqrt()};
}

TensorQuad batch_norm_act_composite(const at::Tensor& x, const std::optional<at::Tensor>& weight,
                                      const std::optional<at::Tensor>& bias,
                                      const std::optional<at::Tensor>& running_mean,
                                      const std::optional<at::Tensor>& running_var, bool training,
                                      double eps, c10::string_view act, double alpha, double gain,
                                      double clamp) {
  check_batch_norm_act_args(x, weight, bias, running_mean, running_var, training, eps, sv(act),
                            alpha, gain, clamp);
  const auto acc = acc_type(x.scalar_type());
  at::Tensor mean, invstd, var;
  if (!training) {
    mean = running_mean->to(acc);
    var = running_var->to(acc);
    invstd = (var + eps).rsqrt();
  }
  auto [xn, save_mean, save_invstd] = at::native_batch_norm(
      x, weight, std::nullopt, training ? std::nullopt : running_mean,
      training ? std::nullopt : running_var, training, 0.0, eps);
  if (training) {
    mean = save_mean.to(acc);
    invstd = save_invstd.to(acc);
    const int64_t m = x.numel() / x.size(1);
    var = (invstd.pow(-2) - eps) * (static_cast<double>(m) / static_cast<double>(std::max<int64_t>(m - 1, 1)));
  }
  std::optional<at::Tensor> b;
  if (defined(bias)) b = bias->to(x.scalar_type());
  at::Tensor y = ops::bias_act(xn, b, 1, act, alpha, gain, clamp);
  return {y, mean, invstd, var};
}

// The backward from ATen ops, for any device; differentiable when mean and invstd are
// (they are then functions of x).
TensorTriple backward_from_ops(const at::Tensor& gy, const at::Tensor& x,
                               const std::optional<at::Tensor>& weight,
                               const std::optional<at::Tensor>& bias, const at::Tensor& mean,
                               const at::Tensor& invstd, bool training, c10::string_view act,
                               double alpha, double gain, double clamp,
                               std::array<bool, 3> mask) {
  const auto acc = acc_type(x.scalar_type());
  const auto dims = reduce_dims(x);
  const at::Tensor xhat = (x.to(acc) - per_channel(mean, x)) * per_channel(invstd, x);
  at::Tensor z = xhat;
  if (defined(weight)) z = z * per_channel(weight->to(acc), x);
  if (defined(bias)) z = z + per_channel(bias->to(acc), x);
  const at::Tensor g = std::get<0>(ops::bias_act_grad(gy.to(acc), z, std::nullopt, 1, act, alpha,
                                                      gain, clamp, false, 1, false));
  at::Tensor dx = at::empty({0}, x.options()), dw, db;
  const bool need_dw = mask[1] && defined(weight), need_db = mask[2] && defined(bias);
  at::Tensor sum_g, sum_gxhat;
  if (need_db || (mask[0] && training)) sum_g = g.sum(dims);
  if (need_dw || (mask[0] && training)) sum_gxhat = (g * xhat).sum(dims);
  if (mask[0]) {
    at::Tensor scale = invstd;
    if (defined(weight)) scale = scale * weight->to(acc);
    at::Tensor d = g;
    if (training) {
      const double m = static_cast<double>(x.numel() / x.size(1));
      d = g - per_channel(sum_g, x) / m - xhat * per_channel(sum_gxhat, x) / m;
    }
    dx = (d * per_channel(scale, x)).to(x.scalar_type());
  }
  dw = need_dw ? sum_gxhat.to(weight->scalar_type())
               : at::empty({0}, defined(weight) ? weight->options() : x.options());
  db = need_db ? sum_g.to(bias->scalar_type())
               : at::empty({0}, defined(bias) ? bias->options() : x.options());
  return {dx, dw, db};
}

TensorTriple batch_norm_act_backward_composite(
    const at::Tensor& grad, const at::Tensor& x, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool training, c10::string_view act, double alpha,
    double gain, double clamp, std::array<bool, 3> output_mask) {
  check_batch_norm_act_backward_args(grad, x, weight, bias, save_mean, save_invstd, sv(act), alpha,
                                     gain, clamp);
  const auto acc = acc_type(x.scalar_type());
  auto [dx, dw, db] = backward_from_ops(grad, x, weight, bias, save_mean.to(acc),
                                        save_invstd.to(acc), training, act, alpha, gain, clamp,
                                        output_mask);
  // the fused kernels' layout contract: dx has x's strides (dense x) like empty_like(x)
  if (dx.numel() > 0) dx = match_strides(dx, make_dense(x));
  return {dx, dw, db};
}

struct BatchNormActFn : public torch::autograd::Function<BatchNormActFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x,
                               const std::optional<at::Tensor>& weight,
                               const std::optional<at::Tensor>& bias,
                               const std::optional<at::Tensor>& running_mean,
                               const std::optional<at::Tensor>& running_var, bool training,
                               double eps, c10::string_view act, double alpha, double gain,
                               double clamp) {
    TORCH_CHECK_VALUE(!ops::requires_grad(running_mean) && !ops::requires_grad(running_var),
                      "batch_norm_act: running_mean and running_var are statistics, not "
                      "differentiable inputs (they require grad)");
    at::Tensor y, mean, invstd, var;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(y, mean, invstd, var) = ops::batch_norm_act(x, weight, bias, running_mean, running_var,
                                                      training, eps, act, alpha, gain, clamp);
    }
    ctx->save_for_backward({x, defined(weight) ? *weight : at::Tensor(),
                            defined(bias) ? *bias : at::Tensor(), mean, invstd});
    ctx->saved_data["training"] = training;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["act"] = std::string(sv(act));
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["gain"] = gain;
    ctx->saved_data["clamp"] = clamp;
    ctx->mark_non_differentiable({mean, invstd, var});
    return {y, mean, invstd, var};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list out(11);
    const at::Tensor& gy = grads[0];
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    std::optional<at::Tensor> weight, bias;
    if (saved[1].defined()) weight = saved[1];
    if (saved[2].defined()) bias = saved[2];
    const std::array<bool, 3> mask{ctx->needs_input_grad(0),
                                   weight.has_value() && ctx->needs_input_grad(1),
                                   bias.has_value() && ctx->needs_input_grad(2)};
    if (!gy.defined() || !(mask[0] || mask[1] || mask[2])) return out;
    const bool training = ctx->saved_data["training"].toBool();
    const std::string act = ctx->saved_data["act"].toStringRef();
    const double alpha = ctx->saved_data["alpha"].toDouble();
    const double gain = ctx->saved_data["gain"].toDouble();
    const double clamp = ctx->saved_data["clamp"].toDouble();
    at::Tensor dx, dw, db;
    if (at::GradMode::is_enabled()) {
      // create_graph: differentiable ops, the statistics as functions of x
      at::Tensor mean = saved[3], invstd = saved[4];
      if (training) std::tie(mean, invstd) = batch_stats(x, ctx->saved_data["eps"].toDouble());
      std::tie(dx, dw, db) = backward_from_ops(gy, x, weight, bias, mean, invstd, training, act,
                                               alpha, gain, clamp, mask);
    } else {
      std::tie(dx, dw, db) = ops::batch_norm_act_backward(gy, x, weight, bias, saved[3], saved[4],
                                                          training, act, alpha, gain, clamp, mask);
    }
    if (mask[0]) out[0] = dx;
    if (mask[1]) out[1] = dw;
    if (mask[2]) out[2] = db;
    return out;
  }
};

TensorQuad batch_norm_act_autograd(const at::Tensor& x, const std::optional<at::Tensor>& weight,
                                     const std::optional<at::Tensor>& bias,
                                     const std::optional<at::Tensor>& running_mean,
                                     const std::optional<at::Tensor>& running_var, bool training,
                                     double eps, c10::string_view act, double alpha, double gain,
                                     double clamp) {
  if (!ops::needs_graph(x, weight, bias, running_mean, running_var)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::batch_norm_act(x, weight, bias, running_mean, running_var, training, eps, act,
                               alpha, gain, clamp);
  }
  auto r = BatchNormActFn::apply(x, weight, bias, running_mean, running_var, training, eps, act,
                                 alpha, gain, clamp);
  return {r[0], r[1], r[2], r[3]};
}

TensorTriple batch_norm_act_backward_autograd(
    const at::Tensor& grad, const at::Tensor& x, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool training, c10::string_view act, double alpha,
    double gain, double clamp, std::array<bool, 3> output_mask) {
  TORCH_CHECK_NOT_IMPLEMENTED(
      !ops::needs_graph(grad, x, weight, bias, save_mean, save_invstd),
      "batch_norm_act_backward is not differentiable itself: for higher-order gradients "
      "differentiate batch_norm_act with create_graph=True");
  at::AutoDispatchBelowADInplaceOrView guard;
  return ops::batch_norm_act_backward(grad, x, weight, bias, save_mean, save_invstd, training,
                                      act, alpha, gain, clamp, output_mask);
}

}  // namespace
}  // namespace fastgan::autograd

TORCH_LIBRARY_IMPL(fastgan, CompositeExplicitAutograd, m) {
  m.impl("batch_norm_act", &fastgan::autograd::batch_norm_act_composite);
  m.impl("batch_norm_act_backward", &fastgan::autograd::batch_norm_act_backward_composite);
}

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("batch_norm_act", &fastgan::autograd::batch_norm_act_autograd);
  m.impl("batch_norm_act_backward", &fastgan::autograd::batch_norm_act_backward_autograd);
}
