// fastgan::grad_penalty: the per-sample gradient penalty in one op, so the common case costs
// one Python call, one pass over the gradients (the op grad_sqnorm) and a few operations
// on N numbers, and one autograd node instead of a chain of small ones.
//
//   p_n = ||g_n||^2                  (center == 0: R1, R2)
//   p_n = (||g_n|| - center)^2       (center != 0: WGAN-GP; value center^2 and gradient 0
//                                     at a zero norm, NaN passes through)
//   out = mean(p) | sum(p) | p
//
// The forward is composite (CompositeExplicitAutograd: grad_sqnorm on the tensor's device,
// then ATen on the N norms), so it needs no kernel per device and runs on fake tensors
// under torch.compile. The backward, d out / d g_n = g_n * 2 u_n (1 - center / ||g_n||),
// is one broadcast multiply; under create_graph it is built from differentiable ops (the
// norms recomputed through grad_sqnorm), so higher orders work.
#include <ATen/Dispatch.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/where.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <cmath>
#include <string>
#include <vector>

#include "dispatch.h"

namespace fastgan::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

enum class Reduction : int64_t { Mean = 0, Sum = 1, None = 2 };

Reduction parse_reduction(c10::string_view r) {
  const std::string_view s(r.data(), r.size());
  if (s == "mean") return Reduction::Mean;
  if (s == "sum") return Reduction::Sum;
  TORCH_CHECK_VALUE(s == "none", "grad_penalty: reduction must be one of mean, sum, none; got '",
                    std::string(s), "'");
  return Reduction::None;
}

void check_center(double center) {
  TORCH_CHECK_VALUE(std::isfinite(center), "grad_penalty: center must be finite, got ", center);
}

// p_n from the squared norms s_n.
at::Tensor penalty_of(const at::Tensor& s, double center) {
  if (center == 0.0) return s;
  const at::Tensor zero = s.eq(0);  // NaN == 0 is false: NaN passes through
  const at::Tensor norm = at::where(zero, at::scalar_tensor(1.0, s.options()), s).sqrt();
  return at::where(zero, at::scalar_tensor(center * center, s.options()), (norm - center).square());
}

at::Tensor reduce(const at::Tensor& p, Reduction r) {
  if (r == Reduction::Mean) return p.mean();
  if (r == Reduction::Sum) return p.sum();
  return p;
}

// penalty_of + reduce as one loop over the N squared norms, for plain CPU tensors (N
// numbers: a handful of ATen calls would cost more than the arithmetic). Same formulas;
// the sum is taken in index order (deterministic).
template <typename acc_t>
acc_t penalty_value(acc_t s, acc_t center) {
  if (center == 0) return s;
  if (s == 0) return center * center;
  const acc_t d = std::sqrt(s) - center;
  return d * d;
}

at::Tensor penalty_cpu(const at::Tensor& s, double center, Reduction r) {
  const at::Tensor sc = s.contiguous();
  const int64_t n = sc.numel();
  at::Tensor out = r == Reduction::None ? at::empty({n}, sc.options()) : at::empty({}, sc.options());
  AT_DISPATCH_FLOATING_TYPES(sc.scalar_type(), "grad_penalty_cpu", [&] {
    const scalar_t* ps = sc.const_data_ptr<scalar_t>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    const scalar_t c = static_cast<scalar_t>(center);
    if (r == Reduction::None) {
      for (int64_t i = 0; i < n; ++i) po[i] = penalty_value(ps[i], c);
      return;
    }
    scalar_t total = 0;
    for (int64_t i = 0; i < n; ++i) total += penalty_value(ps[i], c);
    po[0] = r == Reduction::Mean ? total / static_cast<scalar_t>(n) : total;  // mean of none: NaN
  });
  return out;
}

// A CPU tensor with data: not a fake or functional tensor of torch.compile's tracing (they
// carry the Python key), nor a functorch wrapper, whose data cannot be read directly.
bool plain_cpu(const at::Tensor& t) {
  static const c10::DispatchKeySet kPlain({c10::DispatchKey::CPU, c10::DispatchKey::ADInplaceOrView,
                                           c10::DispatchKey::AutogradCPU,
                                           c10::DispatchKey::AutocastCPU});
  return t.is_cpu() && kPlain.isSupersetOf(t.key_set());
}

at::Tensor penalty_and_reduce(const at::Tensor& s, double center, Reduction r) {
  if (plain_cpu(s)) return penalty_cpu(s, center, r);
  return reduce(penalty_of(s, center), r);
}

// The factor each g_n is multiplied by in the backward: 2 u_n (1 - c / ||g_n||),
// 0 at a zero norm (u_n: the upstream gradient of p_n after the reduction). CPU loop.
at::Tensor factor_cpu(const at::Tensor& s, const at::Tensor& gout, double center, Reduction r) {
  const at::Tensor sc = s.contiguous();
  const at::Tensor gc = gout.to(sc.scalar_type()).contiguous();
  const int64_t n = sc.numel();
  at::Tensor out = at::empty({n}, sc.options());
  AT_DISPATCH_FLOATING_TYPES(sc.scalar_type(), "grad_penalty_backward_cpu", [&] {
    const scalar_t* ps = sc.const_data_ptr<scalar_t>();
    const scalar_t* pg = gc.const_data_ptr<scalar_t>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    const scalar_t c = static_cast<scalar_t>(center);
    const scalar_t scale = r == Reduction::Mean ? scalar_t(1) / static_cast<scalar_t>(std::max<int64_t>(n, 1))
                                                : scalar_t(1);
    for (int64_t i = 0; i < n; ++i) {
      const scalar_t u = (r == Reduction::None ? pg[i] : pg[0]) * scale;
      if (c == 0) {
        po[i] = 2 * u;
      } else if (ps[i] == 0) {
        po[i] = 0;
      } else {
        po[i] = 2 * u * (1 - c / std::sqrt(ps[i]));
      }
    }
  });
  return out;
}

at::Tensor grad_penalty_composite(const at::Tensor& grads, double center,
                                  c10::string_view reduction) {
  const Reduction r = parse_reduction(reduction);
  check_center(center);
  return penalty_and_reduce(ops::grad_sqnorm(grads), center, r);
}

struct GradPenaltyFn : public torch::autograd::Function<GradPenaltyFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grads, double center,
                            c10::string_view reduction) {
    const Reduction r = parse_reduction(reduction);
    check_center(center);
    at::Tensor s, out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      s = ops::grad_sqnorm(grads);
      out = penalty_and_reduce(s, center, r);
    }
    ctx->save_for_backward({grads, s});
    ctx->saved_data["center"] = center;
    ctx->saved_data["reduction"] = static_cast<int64_t>(r);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list gout) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& grads = saved[0];
    // Under create_graph the factor must depend on grads through autograd: recompute the
    // squared norms through the op (its own autograd); otherwise reuse the forward's.
    const at::Tensor s = at::GradMode::is_enabled() ? ops::grad_sqnorm(grads) : saved[1];
    const double center = ctx->saved_data["center"].toDouble();
    const auto r = static_cast<Reduction>(ctx->saved_data["reduction"].toInt());
    const int64_t n = grads.size(0);
    std::vector<int64_t> shape(grads.dim(), 1);
    shape[0] = n;
    if (!at::GradMode::is_enabled() && plain_cpu(s) && plain_cpu(gout[0])) {
      const at::Tensor factor = factor_cpu(s, gout[0], center, r);
      return {grads * factor.to(grads.scalar_type()).reshape(shape), at::Tensor(), at::Tensor()};
    }
    at::Tensor u = gout[0];  // d out / d p_n
    if (r == Reduction::Mean) {
      u = (u / static_cast<double>(std::max<int64_t>(n, 1))).expand({n});
    } else if (r == Reduction::Sum) {
      u = u.expand({n});
    }
    at::Tensor factor = u * 2.0;
    if (center != 0.0) {
      const at::Tensor zero = s.eq(0);
      const at::Tensor norm = at::where(zero, at::scalar_tensor(1.0, s.options()), s).sqrt();
      factor = at::where(zero, at::scalar_tensor(0.0, s.options()), factor * (1.0 - center / norm));
    }
    return {grads * factor.to(grads.scalar_type()).reshape(shape), at::Tensor(), at::Tensor()};
  }
};

at::Tensor grad_penalty_autograd(const at::Tensor& grads, double center,
                                 c10::string_view reduction) {
  if (!ops::needs_graph(grads)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return grad_penalty_composite(grads, center, reduction);
  }
  return GradPenaltyFn::apply(grads, center, reduction);
}

}  // namespace
}  // namespace fastgan::autograd

TORCH_LIBRARY_IMPL(fastgan, CompositeExplicitAutograd, m) {
  m.impl("grad_penalty", &fastgan::autograd::grad_penalty_composite);
}

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("grad_penalty", &fastgan::autograd::grad_penalty_autograd);
}
