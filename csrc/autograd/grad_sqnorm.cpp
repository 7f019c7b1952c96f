// Autograd of fastgan::grad_sqnorm in C++: d/dg sum(g^2) = 2 g, one broadcast multiply
// written with differentiable ATen ops, so the penalty's gradient reaches the graph that
// produced the gradients (create_graph=True) and higher orders work too.
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/mul.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <vector>

#include "dispatch.h"

namespace fastgan::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct GradSqnormFn : public torch::autograd::Function<GradSqnormFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grads) {
    at::Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = ops::grad_sqnorm(grads);
    }
    ctx->save_for_backward({grads});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list up) {
    const at::Tensor grads = ctx->get_saved_variables()[0];
    std::vector<int64_t> shape(grads.dim(), 1);
    shape[0] = -1;
    const at::Tensor scale = up[0].mul(2).to(grads.scalar_type()).reshape(shape);
    return {grads * scale};
  }
};

at::Tensor grad_sqnorm_autograd(const at::Tensor& grads) {
  if (!ops::needs_graph(grads)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::grad_sqnorm(grads);
  }
  return GradSqnormFn::apply(grads);
}

}  // namespace
}  // namespace fastgan::autograd

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("grad_sqnorm", &fastgan::autograd::grad_sqnorm_autograd);
}
