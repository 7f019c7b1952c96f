// Typed handles on fastgan's registered ops, for the autograd kernels: a backward calls the
// registered backward op through the dispatcher, so it runs on whatever device the tensors
// are on and is itself differentiated by that op's autograd kernel (double backward), and
// under torch.compile it traces like any other op.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/MemoryFormat.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/string_view.h>

#include <array>
#include <optional>
#include <tuple>

namespace fastgan::ops {

using TensorPair = std::tuple<at::Tensor, at::Tensor>;

template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

inline at::Tensor bias_act(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim,
                           c10::string_view act, double alpha, double gain, double clamp) {
  static const auto op =
      find_op<at::Tensor(const at::Tensor&, const std::optional<at::Tensor>&, int64_t,
                         c10::string_view, double, double, double)>("fastgan::bias_act");
  return op.call(x, b, dim, act, alpha, gain, clamp);
}

inline TensorPair bias_act_grad(const at::Tensor& grad, const at::Tensor& ref,
                                const std::optional<at::Tensor>& b, int64_t dim,
                                c10::string_view act, double alpha, double gain, double clamp,
                                bool ref_is_y, int64_t order, bool reduce) {
  static const auto op =
      find_op<TensorPair(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                         int64_t, c10::string_view, double, double, double, bool, int64_t,
                         bool)>("fastgan::bias_act_grad");
  return op.call(grad, ref, b, dim, act, alpha, gain, clamp, ref_is_y, order, reduce);
}

inline at::Tensor grad_sqnorm(const at::Tensor& grads) {
  static const auto op = find_op<at::Tensor(const at::Tensor&)>("fastgan::grad_sqnorm");
  return op.call(grads);
}

inline at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy,
                            int64_t downx, int64_t downy, int64_t padx0, int64_t padx1,
                            int64_t pady0, int64_t pady1, bool flip, double gain) {
  static const auto op =
      find_op<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, int64_t, int64_t,
                         int64_t, int64_t, int64_t, int64_t, int64_t, bool, double)>(
          "fastgan::upfirdn2d");
  return op.call(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain);
}

inline TensorPair fir_bias_act(const at::Tensor& x, const std::optional<at::Tensor>& b,
                               c10::ArrayRef<double> f, int64_t fh, int64_t fw, bool separable,
                               c10::IntArrayRef pad, c10::string_view act, double alpha,
                               double gain, double clamp,
                               std::optional<at::MemoryFormat> out_format) {
  static const auto op =
      find_op<TensorPair(const at::Tensor&, const std::optional<at::Tensor>&,
                         c10::ArrayRef<double>, int64_t, int64_t, bool, c10::IntArrayRef,
                         c10::string_view, double, double, double,
                         std::optional<at::MemoryFormat>)>("fastgan::fir_bias_act");
  return op.call(x, b, f, fh, fw, separable, pad, act, alpha, gain, clamp, out_format);
}

inline TensorPair fir_bias_act_grad(const at::Tensor& grad, const at::Tensor& saved,
                                    const std::optional<at::Tensor>& gz, c10::ArrayRef<double> f,
                                    int64_t fh, int64_t fw, bool separable, c10::IntArrayRef pad,
                                    int64_t in_h, int64_t in_w, c10::string_view act,
                                    double alpha, double gain, double clamp, bool reduce) {
  static const auto op =
      find_op<TensorPair(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                         c10::ArrayRef<double>, int64_t, int64_t, bool, c10::IntArrayRef,
                         int64_t, int64_t, c10::string_view, double, double, double, bool)>(
          "fastgan::fir_bias_act_grad");
  return op.call(grad, saved, gz, f, fh, fw, separable, pad, in_h, in_w, act, alpha, gain,
                 clamp, reduce);
}

using TensorTriple = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

using TensorQuad = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

inline TensorQuad batch_norm_act(const at::Tensor& x, const std::optional<at::Tensor>& weight,
                                   const std::optional<at::Tensor>& bias,
                                   const std::optional<at::Tensor>& running_mean,
                                   const std::optional<at::Tensor>& running_var, bool training,
                                   double eps, c10::string_view act, double alpha, double gain,
                                   double clamp) {
  static const auto op =
      find_op<TensorQuad(const at::Tensor&, const std::optional<at::Tensor>&,
                           const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                           const std::optional<at::Tensor>&, bool, double, c10::string_view,
                           double, double, double)>("fastgan::batch_norm_act");
  return op.call(x, weight, bias, running_mean, running_var, training, eps, act, alpha, gain,
                 clamp);
}

inline TensorTriple batch_norm_act_backward(const at::Tensor& grad, const at::Tensor& x,
                                            const std::optional<at::Tensor>& weight,
                                            const std::optional<at::Tensor>& bias,
                                            const at::Tensor& save_mean,
                                            const at::Tensor& save_invstd, bool training,
                                            c10::string_view act, double alpha, double gain,
                                            double clamp, std::array<bool, 3> output_mask) {
  static const auto op =
      find_op<TensorTriple(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                           const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                           bool, c10::string_view, double, double, double, std::array<bool, 3>)>(
          "fastgan::batch_norm_act_backward");
  return op.call(grad, x, weight, bias, save_mean, save_invstd, training, act, alpha, gain, clamp,
                 output_mask);
}

// True when autograd must record a node: grad mode on and some tensor input requires grad.
inline bool requires_grad(const at::Tensor& t) { return t.defined() && t.requires_grad(); }
inline bool requires_grad(const std::optional<at::Tensor>& t) {
  return t.has_value() && requires_grad(*t);
}
template <typename... Ts>
bool needs_graph(const Ts&... ts) {
  return at::GradMode::is_enabled() && (requires_grad(ts) || ...);
}

}  // namespace fastgan::ops
