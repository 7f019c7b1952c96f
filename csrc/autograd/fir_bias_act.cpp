// Autograd of fastgan::fir_bias_act and fastgan::fir_bias_act_grad in C++.
//
// fir_bias_act returns (y, saved): saved is what the backward needs -- a uint8 mask for the
// piecewise-linear activations (bit 0: z > 0, bit 1: not clamped), the pre-activation z for
// smooth ones, nothing for linear without clamp. Its backward is the op fir_bias_act_grad.
// That op's own backward is the adjoint of the adjoint: the forward filter + bias (the op
// fir_bias_act with a linear activation) followed by dy/dz, so gradients of gradients work,
// to any order for the piecewise-linear activations.
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/bitwise_and.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/ne.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
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

enum class Saves : int64_t { Nothing = 0, Mask = 1, Z = 2 };

Saves fir_saves(Act act, double clamp) {
  if (act == Act::Linear && clamp < 0) return Saves::Nothing;
  return act_is_piecewise_linear(act) ? Saves::Mask : Saves::Z;
}

// The filter and activation arguments both ops share, kept for the backward.
void save_params(AutogradContext* ctx, c10::ArrayRef<double> f, int64_t fh, int64_t fw,
                 bool separable, c10::IntArrayRef pad, c10::string_view act, double alpha,
                 double gain, double clamp) {
  ctx->saved_data["f"] = f.vec();
  ctx->saved_data["fhw"] = std::vector<int64_t>{fh, fw, separable ? 1 : 0};
  ctx->saved_data["pad"] = pad.vec();
  ctx->saved_data["act"] = std::string(sv(act));
  ctx->saved_data["params"] = std::vector<double>{alpha, gain, clamp};
}

struct Params {
  std::vector<double> f;
  int64_t fh, fw;
  bool separable;
  std::vector<int64_t> pad;
  std::string act;
  double alpha, gain, clamp;

  explicit Params(AutogradContext* ctx)
      : f(ctx->saved_data["f"].toDoubleVector()),
        pad(ctx->saved_data["pad"].toIntVector()),
        act(ctx->saved_data["act"].toStringRef()) {
    const auto fhw = ctx->saved_data["fhw"].toIntVector();
    fh = fhw[0];
    fw = fhw[1];
    separable = fhw[2] != 0;
    const auto p = ctx->saved_data["params"].toDoubleVector();
    alpha = p[0];
    gain = p[1];
    clamp = p[2];
  }
};

struct FirBiasActFn : public torch::autograd::Function<FirBiasActFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x,
                               const std::optional<at::Tensor>& b, c10::ArrayRef<double> f,
                               int64_t fh, int64_t fw, bool separable, c10::IntArrayRef pad,
                               c10::string_view act, double alpha, double gain, double clamp,
                               std::optional<at::MemoryFormat> out_format) {
    at::Tensor y, saved;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(y, saved) = ops::fir_bias_act(x, b, f, fh, fw, separable, pad, act, alpha, gain,
                                             clamp, out_format);
    }
    save_params(ctx, f, fh, fw, separable, pad, act, alpha, gain, clamp);
    ctx->saved_data["in_hw"] = std::vector<int64_t>{x.size(2), x.size(3)};
    ctx->saved_data["has_b"] = b.has_value() && b->defined();
    ctx->saved_data["y_cl"] = y.dim() == 4 && !y.is_contiguous() &&
                              y.is_contiguous(at::MemoryFormat::ChannelsLast);
    ctx->save_for_backward({saved});
    if (!saved.is_floating_point()) ctx->mark_non_differentiable({saved});
    ctx->set_materialize_grads(false);
    return {y, saved};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list out(12);
    const bool has_b = ctx->saved_data["has_b"].toBool();
    const bool need_x = ctx->needs_input_grad(0);
    const bool need_b = has_b && ctx->needs_input_grad(1);
    const at::Tensor saved = ctx->get_saved_variables()[0];
    at::Tensor gy = grads[0];
    const at::Tensor gz = (grads[1].defined() && saved.is_floating_point()) ? grads[1]
                                                                             : at::Tensor();
    if (!(need_x || need_b) || (!gy.defined() && !gz.defined())) return out;
    if (!gy.defined()) gy = at::zeros_like(gz);
    // gy in y's layout; the gradient op works in saved's layout (transposing a contiguous
    // gy in cache for channels_last work), and gx comes out in that layout.
    gy = gy.contiguous(ctx->saved_data["y_cl"].toBool() ? at::MemoryFormat::ChannelsLast
                                                         : at::MemoryFormat::Contiguous);
    const Params p(ctx);
    const auto in_hw = ctx->saved_data["in_hw"].toIntVector();
    std::optional<at::Tensor> gz_opt;
    if (gz.defined()) gz_opt = gz;
    auto [gx, gb] = ops::fir_bias_act_grad(gy, saved, gz_opt, p.f, p.fh, p.fw, p.separable,
                                           p.pad, in_hw[0], in_hw[1], p.act, p.alpha, p.gain,
                                           p.clamp, need_b);
    if (need_x) out[0] = gx;
    if (need_b) out[1] = gb;
    return out;
  }
};

// dy/dz from the uint8 mask, as a tensor of `dtype` (double backward). The slopes are
// made in that dtype: Python-number scalars would round them to float32.
at::Tensor mask_factor(const at::Tensor& mask, Act act, double alpha, double gain,
                       at::ScalarType dtype) {
  const auto opts = mask.options().dtype(dtype);
  const at::Tensor live = at::bitwise_and(mask, 2).ne(0);
  at::Tensor slope = at::scalar_tensor(gain, opts);
  if (act != Act::Linear) {
    const double neg = act == Act::LReLU ? alpha * gain : 0.0;
    slope = at::where(at::bitwise_and(mask, 1).ne(0), slope, at::scalar_tensor(neg, opts));
  }
  return at::where(live, slope, at::scalar_tensor(0.0, opts));
}

struct FirBiasActGradFn : public torch::autograd::Function<FirBiasActGradFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad,
                               const at::Tensor& saved, const std::optional<at::Tensor>& gz,
                               c10::ArrayRef<double> f, int64_t fh, int64_t fw, bool separable,
                               c10::IntArrayRef pad, int64_t in_h, int64_t in_w,
                               c10::string_view act, double alpha, double gain, double clamp,
                               bool reduce) {
    at::Tensor gx, gb;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(gx, gb) = ops::fir_bias_act_grad(grad, saved, gz, f, fh, fw, separable, pad,
                                                in_h, in_w, act, alpha, gain, clamp, reduce);
    }
    const Saves saves = fir_saves(parse_act(sv(act)), clamp);
    save_params(ctx, f, fh, fw, separable, pad, act, alpha, gain, clamp);
    ctx->saved_data["shape_in"] =
        std::vector<int64_t>{grad.size(0), grad.size(1), in_h, in_w};
    ctx->saved_data["saves"] = static_cast<int64_t>(saves);
    ctx->saved_data["reduce"] = reduce;
    ctx->saved_data["has_gz"] = gz.has_value() && gz->defined();
    ctx->save_for_backward({saves == Saves::Z ? grad : at::Tensor(), saved});
    ctx->set_materialize_grads(false);
    return {gx, gb};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list out(15);
    const bool reduce = ctx->saved_data["reduce"].toBool();
    at::Tensor h_gx = grads[0];
    const at::Tensor& h_gb = grads[1];
    if (!h_gx.defined() && (!h_gb.defined() || !reduce)) return out;
    const Params p(ctx);
    if (!h_gx.defined()) {
      h_gx = at::zeros(ctx->saved_data["shape_in"].toIntVector(), h_gb.options());
    }
    std::optional<at::Tensor> hb;
    if (reduce && h_gb.defined()) hb = h_gb;
    // The adjoint of (grad -> gx, gb) applied to (h_gx, h_gb): the forward filter + bias.
    const at::Tensor u = std::get<0>(ops::fir_bias_act(h_gx, hb, p.f, p.fh, p.fw, p.separable,
                                                       p.pad, "linear", 0.0, 1.0, -1.0,
                                                       std::nullopt));
    auto saved_vars = ctx->get_saved_variables();
    const at::Tensor& grad = saved_vars[0];
    const at::Tensor& saved = saved_vars[1];
    const auto saves = static_cast<Saves>(ctx->saved_data["saves"].toInt());
    const bool has_gz = ctx->saved_data["has_gz"].toBool();
    if (ctx->needs_input_grad(0)) {
      if (saves == Saves::Nothing) {
        out[0] = p.gain == 1.0 ? u : u * p.gain;  // gain 1 (the filters' linear passes): no copy
      } else if (saves == Saves::Mask) {
        out[0] = u * mask_factor(saved, parse_act(p.act), p.alpha, p.gain, u.scalar_type());
      } else {
        out[0] = std::get<0>(ops::bias_act_grad(u, saved, std::nullopt, 1, p.act, p.alpha,
                                                p.gain, p.clamp, false, 1, false));
      }
    }
    if (saves == Saves::Z && ctx->needs_input_grad(1)) {
      out[1] = std::get<0>(ops::bias_act_grad(u * grad, saved, std::nullopt, 1, p.act, p.alpha,
                                              p.gain, p.clamp, false, 2, false));
    }
    if (has_gz && ctx->needs_input_grad(2)) out[2] = u;
    return out;
  }
};

std::tuple<at::Tensor, at::Tensor> fir_bias_act_autograd(
    const at::Tensor& x, const std::optional<at::Tensor>& b, c10::ArrayRef<double> f,
    int64_t fh, int64_t fw, bool separable, c10::IntArrayRef pad, c10::string_view act,
    double alpha, double gain, double clamp, std::optional<at::MemoryFormat> out_format) {
  if (!ops::needs_graph(x, b)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::fir_bias_act(x, b, f, fh, fw, separable, pad, act, alpha, gain, clamp,
                             out_format);
  }
  auto r = FirBiasActFn::apply(x, b, f, fh, fw, separable, pad, act, alpha, gain, clamp,
                               out_format);
  return {r[0], r[1]};
}

std::tuple<at::Tensor, at::Tensor> fir_bias_act_grad_autograd(
    const at::Tensor& grad, const at::Tensor& saved, const std::optional<at::Tensor>& gz,
    c10::ArrayRef<double> f, int64_t fh, int64_t fw, bool separable, c10::IntArrayRef pad,
    int64_t in_h, int64_t in_w, c10::string_view act, double alpha, double gain, double clamp,
    bool reduce) {
  if (!ops::needs_graph(grad, saved, gz)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::fir_bias_act_grad(grad, saved, gz, f, fh, fw, separable, pad, in_h, in_w, act,
                                  alpha, gain, clamp, reduce);
  }
  auto r = FirBiasActGradFn::apply(grad, saved, gz, f, fh, fw, separable, pad, in_h, in_w, act,
                                   alpha, gain, clamp, reduce);
  return {r[0], r[1]};
}

}  // namespace
}  // namespace fastgan::autograd

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("fir_bias_act", &fastgan::autograd::fir_bias_act_autograd);
  m.impl("fir_bias_act_grad", &fastgan::autograd::fir_bias_act_grad_autograd);
}
