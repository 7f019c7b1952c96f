// Autograd of fastgan::upfirdn2d in C++. upfirdn2d is linear in x; its adjoint is the same
// op with the filter flipped (convolution <-> correlation), up and down swapped and the
// padding mapping the output grid back onto the input grid, so the backward calls the op
// itself and gradients of every order come for free. The filter is a constant.
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "dispatch.h"

namespace fastgan::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr const char* kNoFilterGrad =
    "upfirdn2d: gradients w.r.t. the filter f are not supported; pass f.detach()";

struct Upfirdn2dFn : public torch::autograd::Function<Upfirdn2dFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& f,
                            int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                            int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                            bool flip, double gain) {
    at::Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      y = ops::upfirdn2d(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain);
    }
    ctx->save_for_backward({f});
    ctx->saved_data["args"] = std::vector<int64_t>{upx, upy, downx, downy, padx0, pady0,
                                                   x.size(2), x.size(3)};
    ctx->saved_data["flip"] = flip;
    ctx->saved_data["gain"] = gain;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK_NOT_IMPLEMENTED(!ctx->needs_input_grad(1), kNoFilterGrad);
    variable_list out(12);
    if (!ctx->needs_input_grad(0)) return out;
    const at::Tensor f = ctx->get_saved_variables()[0];
    const auto a = ctx->saved_data["args"].toIntVector();
    const int64_t upx = a[0], upy = a[1], downx = a[2], downy = a[3], px0 = a[4], py0 = a[5];
    const int64_t ih = a[6], iw = a[7];
    const at::Tensor& dy = grads[0];
    const int64_t oh = dy.size(2), ow = dy.size(3);
    const int64_t fw = f.size(-1), fh = f.size(0);
    out[0] = ops::upfirdn2d(dy, f, downx, downy, upx, upy, fw - px0 - 1,
                            iw * upx - ow * downx + px0 - upx + 1, fh - py0 - 1,
                            ih * upy - oh * downy + py0 - upy + 1,
                            !ctx->saved_data["flip"].toBool(), ctx->saved_data["gain"].toDouble());
    return out;
  }
};

at::Tensor upfirdn2d_autograd(const at::Tensor& x, const at::Tensor& f, int64_t upx,
                              int64_t upy, int64_t downx, int64_t downy, int64_t padx0,
                              int64_t padx1, int64_t pady0, int64_t pady1, bool flip,
                              double gain) {
  if (!ops::needs_graph(x, f)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::upfirdn2d(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain);
  }
  TORCH_CHECK_NOT_IMPLEMENTED(!f.requires_grad(), kNoFilterGrad);
  return Upfirdn2dFn::apply(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip,
                            gain);
}

}  // namespace
}  // namespace fastgan::autograd

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("upfirdn2d", &fastgan::autograd::upfirdn2d_autograd);
}
