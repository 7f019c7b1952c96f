// Autograd of fastgan::bias_act and fastgan::bias_act_grad, in C++ (the Autograd dispatch
// key): no Python runs per call. The forward saves only what the backward needs (y, x and
// b, or nothing); the backward is the op bias_act_grad, whose own autograd (below) gives
// double backward, and any order for the piecewise-linear activations.
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/mul.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "../common/bias_act_common.h"
#include "dispatch.h"

namespace fastgan::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::string_view sv(c10::string_view s) { return std::string_view(s.data(), s.size()); }

// What the forward keeps for the backward.
enum class Saves : int64_t {
  Nothing = 0,  // linear without clamp: the derivative is the constant gain
  Y = 1,        // the output: the derivative is a function of y
  XB = 2,       // the input and the bias
};

Saves bias_act_saves(Act act, double alpha, double gain, double clamp) {
  if (act == Act::Linear && clamp < 0) return Saves::Nothing;
  if (!act_derivative_from_output(act)) return Saves::XB;
  if (act == Act::ReLU || act == Act::LReLU) {
    // y > 0 <=> x + b > 0 needs a non-negative gain (and slope).
    const bool monotone = gain >= 0 && (act == Act::ReLU || alpha >= 0);
    return monotone ? Saves::Y : Saves::XB;
  }
  return Saves::Y;
}

int64_t wrapped_dim(int64_t dim, int64_t ndim) {
  return (ndim > 0 && dim < 0 && dim >= -ndim) ? dim + ndim : dim;
}

struct BiasActFn : public torch::autograd::Function<BiasActFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const std::optional<at::Tensor>& b, int64_t dim,
                            c10::string_view act, double alpha, double gain, double clamp) {
    at::Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      y = ops::bias_act(x, b, dim, act, alpha, gain, clamp);
    }
    const Saves saves = bias_act_saves(parse_act(sv(act)), alpha, gain, clamp);
    const bool has_b = b.has_value() && b->defined();
    if (saves == Saves::Y) {
      ctx->save_for_backward({y});
    } else if (saves == Saves::XB) {
      ctx->save_for_backward({x, has_b ? *b : at::Tensor()});
    }
    ctx->saved_data["saves"] = static_cast<int64_t>(saves);
    ctx->saved_data["has_b"] = has_b;
    ctx->saved_data["dim"] = wrapped_dim(dim, x.dim());
    ctx->saved_data["act"] = std::string(sv(act));
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["gain"] = gain;
    ctx->saved_data["clamp"] = clamp;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const bool has_b = ctx->saved_data["has_b"].toBool();
    const bool need_x = ctx->needs_input_grad(0);
    const bool need_b = has_b && ctx->needs_input_grad(1);
    variable_list out(7);
    const at::Tensor& gy = grads[0];
    if (!(need_x || need_b) || !gy.defined()) return out;
    const auto saves = static_cast<Saves>(ctx->saved_data["saves"].toInt());
    const std::string act = ctx->saved_data["act"].toStringRef();
    const int64_t dim = ctx->saved_data["dim"].toInt();
    const double alpha = ctx->saved_data["alpha"].toDouble();
    const double gain = ctx->saved_data["gain"].toDouble();
    const double clamp = ctx->saved_data["clamp"].toDouble();
    at::Tensor ref;
    std::optional<at::Tensor> b;
    bool ref_is_y = true;
    if (saves == Saves::Nothing) {
      // ref = grad with ref_is_y: the kernel's factor d/dy(y) * gain is the gain, and it
      // still reduces the bias gradient in the same pass.
      ref = gy;
    } else {
      auto saved = ctx->get_saved_variables();
      ref = saved[0];
      if (saves == Saves::XB) {
        ref_is_y = false;
        if (has_b) b = saved[1];
      }
    }
    auto [dx, db] =
        ops::bias_act_grad(gy, ref, b, dim, act, alpha, gain, clamp, ref_is_y, 1, need_b);
    if (need_x) out[0] = dx;
    if (need_b) out[1] = db;
    return out;
  }
};

struct BiasActGradFn : public torch::autograd::Function<BiasActGradFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad,
                               const at::Tensor& ref, const std::optional<at::Tensor>& b,
                               int64_t dim, c10::string_view act, double alpha, double gain,
                               double clamp, bool ref_is_y, int64_t order, bool reduce) {
    at::Tensor out, sums;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(out, sums) =
          ops::bias_act_grad(grad, ref, b, dim, act, alpha, gain, clamp, ref_is_y, order, reduce);
    }
    const bool smooth = !act_is_piecewise_linear(parse_act(sv(act)));
    const bool has_b = b.has_value() && b->defined();
    // grad is needed only for the derivative w.r.t. ref, which is zero when piecewise linear.
    ctx->save_for_backward({smooth ? grad : at::Tensor(), ref, has_b ? *b : at::Tensor()});
    ctx->saved_data["has_b"] = has_b;
    ctx->saved_data["dim"] = wrapped_dim(dim, ref.dim());
    ctx->saved_data["act"] = std::string(sv(act));
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["gain"] = gain;
    ctx->saved_data["clamp"] = clamp;
    ctx->saved_data["ref_is_y"] = ref_is_y;
    ctx->saved_data["order"] = order;
    ctx->saved_data["reduce"] = reduce;
    ctx->saved_data["smooth"] = smooth;
    ctx->mark_non_differentiable(reduce ? variable_list{} : variable_list{sums});
    ctx->set_materialize_grads(false);
    return {out, sums};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(11);
    const bool has_b = ctx->saved_data["has_b"].toBool();
    const int64_t dim = ctx->saved_data["dim"].toInt();
    const bool reduce = ctx->saved_data["reduce"].toBool();
    auto saved = ctx->get_saved_variables();
    const at::Tensor& grad = saved[0];
    const at::Tensor& ref = saved[1];
    std::optional<at::Tensor> b;
    if (has_b) b = saved[2];
    // out_sum = sum(out) over every dim but `dim`, so its gradient spreads back evenly.
    at::Tensor h = grads[0];
    if (reduce && grads[1].defined()) {
      std::vector<int64_t> shape(ref.dim(), 1);
      shape[dim] = -1;
      at::Tensor spread = grads[1].reshape(shape);
      h = h.defined() ? h + spread : spread.expand(ref.sizes());
    }
    if (!h.defined()) return result;
    const std::string act = ctx->saved_data["act"].toStringRef();
    const double alpha = ctx->saved_data["alpha"].toDouble();
    const double gain = ctx->saved_data["gain"].toDouble();
    const double clamp = ctx->saved_data["clamp"].toDouble();
    const bool ref_is_y = ctx->saved_data["ref_is_y"].toBool();
    const int64_t order = ctx->saved_data["order"].toInt();
    const bool need_grad = ctx->needs_input_grad(0);
    const bool need_ref = ctx->needs_input_grad(1);
    const bool need_b = has_b && ctx->needs_input_grad(2);
    if (need_grad) {
      result[0] = std::get<0>(ops::bias_act_grad(h, ref, b, dim, act, alpha, gain, clamp,
                                                 ref_is_y, order, false));
    }
    if ((need_ref || need_b) && ctx->saved_data["smooth"].toBool()) {
      TORCH_CHECK_NOT_IMPLEMENTED(order < 2, "bias_act: third-order gradients are not "
                                  "implemented for act='", act, "' (only for the "
                                  "piecewise-linear linear, relu and lrelu)");
      auto [d_ref, d_b] = ops::bias_act_grad(h * grad, ref, b, dim, act, alpha, gain, clamp,
                                             ref_is_y, 2, need_b);
      if (need_ref) result[1] = d_ref;
      if (need_b) result[2] = d_b;
    }
    return result;
  }
};

at::Tensor bias_act_autograd(const at::Tensor& x, const std::optional<at::Tensor>& b,
                             int64_t dim, c10::string_view act, double alpha, double gain,
                             double clamp) {
  if (!ops::needs_graph(x, b)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::bias_act(x, b, dim, act, alpha, gain, clamp);
  }
  return BiasActFn::apply(x, b, dim, act, alpha, gain, clamp);
}

std::tuple<at::Tensor, at::Tensor> bias_act_grad_autograd(
    const at::Tensor& grad, const at::Tensor& ref, const std::optional<at::Tensor>& b,
    int64_t dim, c10::string_view act, double alpha, double gain, double clamp, bool ref_is_y,
    int64_t order, bool reduce) {
  if (!ops::needs_graph(grad, ref, b)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::bias_act_grad(grad, ref, b, dim, act, alpha, gain, clamp, ref_is_y, order,
                              reduce);
  }
  auto r = BiasActGradFn::apply(grad, ref, b, dim, act, alpha, gain, clamp, ref_is_y, order,
                                reduce);
  return {r[0], r[1]};
}

}  // namespace
}  // namespace fastgan::autograd

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("bias_act", &fastgan::autograd::bias_act_autograd);
  m.impl("bias_act_grad", &fastgan::autograd::bias_act_grad_autograd);
}
