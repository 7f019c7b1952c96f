// CPU op wrappers of fastgan::fir_bias_act (FIR filter + bias + activation + gain + clamp
// in one pass) and fastgan::fir_bias_act_grad (dy/dz, the adjoint FIR filter and the bias
// gradient in one pass). Shapes, checks and the saved-tensor format are shared with the
// CUDA kernels (common/fir_bias_act_common.h); the loops are in fir_bias_act_kernel.h,
// compiled for the baseline instruction set and for AVX2 and chosen at run time.
#include <torch/library.h>

#include "../common/fir_bias_act_common.h"
#include "cpu_memory.h"
#include "dispatch.h"
#include "fir_bias_act_cpu.h"

namespace fastgan::cpu {

namespace {

std::tuple<at::Tensor, at::Tensor> fir_bias_act_cpu(
    const at::Tensor& x, const std::optional<at::Tensor>& b, c10::ArrayRef<double> f,
    int64_t fh, int64_t fw, bool separable, c10::IntArrayRef pad, c10::string_view act,
    double alpha, double gain, double clamp, std::optional<at::MemoryFormat> out_format) {
  FirForwardPlan plan = plan_fir_forward(x, b, f, fh, fw, separable, pad,
                                         std::string_view(act.data(), act.size()), alpha, gain,
                                         clamp, out_format, true);
  if (plan.y.numel() == 0) return {plan.y, plan.saved};
  advise_huge_pages(plan.y);
  advise_huge_pages(plan.saved);
  if (use_avx2(IsaOp::FirBiasAct)) {
    kernels_avx2::fir_forward(plan, alpha, gain, clamp);
  } else {
    kernels_default::fir_forward(plan, alpha, gain, clamp);
  }
  return {plan.y, plan.saved};
}

std::tuple<at::Tensor, at::Tensor> fir_bias_act_grad_cpu(
    const at::Tensor& grad, const at::Tensor& saved, const std::optional<at::Tensor>& gz,
    c10::ArrayRef<double> f, int64_t fh, int64_t fw, bool separable, c10::IntArrayRef pad,
    int64_t in_h, int64_t in_w, c10::string_view act, double alpha, double gain, double clamp,
    bool reduce) {
  FirGradPlan plan = plan_fir_grad(grad, saved, gz, f, fh, fw, separable, pad, in_h, in_w,
                                   std::string_view(act.data(), act.size()), alpha, gain,
                                   clamp, reduce, true);
  if (plan.gx.numel() == 0 && plan.grad.numel() == 0) {
    if (reduce) plan.gb.zero_();
    return {plan.gx, plan.gb};
  }
  advise_huge_pages(plan.gx);
  if (use_avx2(IsaOp::FirBiasAct)) {
    kernels_avx2::fir_grad(plan, alpha, gain, clamp);
  } else {
    kernels_default::fir_grad(plan, alpha, gain, clamp);
  }
  return {plan.gx, plan.gb};
}

}  // namespace
}  // namespace fastgan::cpu

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("fir_bias_act", &fastgan::cpu::fir_bias_act_cpu);
  m.impl("fir_bias_act_grad", &fastgan::cpu::fir_bias_act_grad_cpu);
}
