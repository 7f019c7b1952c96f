// CPU implementation of fastgan::bias_act and fastgan::bias_act_grad: tensor handling and
// the call of the kernel copy dispatch.h chooses (baseline or AVX2); the loops are in
// bias_act_kernel.h.
#include <ATen/Dispatch.h>
#include <ATen/ops/repeat_interleave.h>
#include <torch/library.h>

#include <type_traits>

#include "../common/bias_act_common.h"
#include "bias_act_cpu.h"
#include "cpu_memory.h"
#include "dispatch.h"

namespace fastgan::cpu {
namespace {

// Below this many elements per row, a per-row scalar bias leaves vectors mostly empty, so
// rows are merged into [outer, C * inner] with a bias vector instead (channels_last: inner 1).
constexpr int64_t kMinRowLen = 16;
// Minimum elements per reduction chunk in vector-bias mode.
constexpr int64_t kChunkElems = 32768;

struct Rows {
  RowLayout layout;
  at::Tensor bias;  // per-channel (row mode) or per-column (vector mode)
};

Rows to_rows(const DenseLayout& l, const at::Tensor& b) {
  Rows r;
  if (l.inner >= kMinRowLen || l.channels == 1) {
    r.layout.rows = l.outer * l.channels;
    r.layout.row_len = l.inner;
    r.layout.channels = l.channels;
    r.layout.vec_bias = false;
    r.bias = b;
  } else {
    r.layout.rows = l.outer;
    r.layout.row_len = l.channels * l.inner;
    r.layout.channels = l.channels;
    r.layout.vec_bias = true;
    r.layout.chunk_rows = std::max<int64_t>(1, kChunkElems / r.layout.row_len);
    r.bias = (b.defined() && l.inner > 1) ? at::repeat_interleave(b, l.inner) : b;
  }
  return r;
}

// sums[c] from the kernels' partial sums, added in a fixed order (deterministic): [outer *
// C] per row (row = o * C + c) or [chunks, C * inner] per chunk (vector-bias mode). A
// plain loop: on the tiny tensors where it matters, ATen reduction calls cost more than
// the sums themselves.
void reduce_partials(const at::Tensor& partial, const DenseLayout& l, const RowLayout& rl,
                     at::Tensor& sums) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, sums.scalar_type(), "bias_act_sums", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const acc_t* p = partial.const_data_ptr<acc_t>();
    scalar_t* out = sums.mutable_data_ptr<scalar_t>();
    const int64_t C = l.channels, inner = l.inner;
    if (rl.vec_bias) {
      const int64_t chunks = partial.size(0), len = partial.size(1);
      for (int64_t c = 0; c < C; ++c) {
        acc_t s = 0;
        for (int64_t k = 0; k < chunks; ++k) {
          const acc_t* row = p + k * len + c * inner;
          for (int64_t i = 0; i < inner; ++i) s += row[i];
        }
        out[c] = static_cast<scalar_t>(s);
      }
    } else {
      for (int64_t c = 0; c < C; ++c) {
        acc_t s = 0;
        for (int64_t o = 0; o < l.outer; ++o) s += p[o * C + c];
        out[c] = static_cast<scalar_t>(s);
      }
    }
  });
}

ActArgs act_args(Act act, double alpha, double gain, double clamp) {
  ActArgs a;
  a.act = act;
  a.alpha = alpha;
  a.gain = gain;
  a.clamp = clamp;
  return a;
}

at::Tensor bias_act_cpu(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim,
                        c10::string_view act, double alpha, double gain, double clamp) {
  ForwardPlan plan =
      plan_forward(x, b, dim, std::string_view(act.data(), act.size()), alpha, gain, clamp);
  if (plan.x.numel() == 0) return plan.y;
  advise_huge_pages(plan.y);
  Rows rows = to_rows(plan.layout, plan.b);
  ForwardArgs args;
  args.dtype = plan.x.scalar_type();
  args.layout = rows.layout;
  args.act = act_args(plan.act, alpha, gain, clamp);
  args.x = plan.x.const_data_ptr();
  args.b = rows.bias.defined() ? rows.bias.const_data_ptr() : nullptr;
  args.y = plan.y.mutable_data_ptr();
  if (use_avx2(IsaOp::BiasAct)) {
    kernels_avx2::bias_act_forward(args);
  } else {
    kernels_default::bias_act_forward(args);
  }
  return plan.y;
}

std::tuple<at::Tensor, at::Tensor> bias_act_grad_cpu(
    const at::Tensor& grad, const at::Tensor& ref, const std::optional<at::Tensor>& b,
    int64_t dim, c10::string_view act, double alpha, double gain, double clamp, bool ref_is_y,
    int64_t order, bool reduce) {
  GradPlan plan = plan_grad(grad, ref, b, dim, std::string_view(act.data(), act.size()), alpha,
                            gain, clamp, ref_is_y, order, reduce);
  if (plan.ref.numel() == 0) return {plan.out, plan.sums};
  advise_huge_pages(plan.out);
  Rows rows = to_rows(plan.layout, plan.b);
  const auto acc_type = plan.ref.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor partial;
  if (reduce) {
    const RowLayout& l = rows.layout;
    partial = l.vec_bias ? at::empty({(l.rows + l.chunk_rows - 1) / l.chunk_rows, l.row_len},
                                     plan.ref.options().dtype(acc_type))
                         : at::empty({l.rows}, plan.ref.options().dtype(acc_type));
  }
  GradArgs args;
  args.dtype = plan.ref.scalar_type();
  args.layout = rows.layout;
  args.act = act_args(plan.act, alpha, gain, clamp);
  args.grad = plan.grad.const_data_ptr();
  args.ref = plan.ref.const_data_ptr();
  args.b = rows.bias.defined() ? rows.bias.const_data_ptr() : nullptr;
  args.out = plan.out.mutable_data_ptr();
  args.ref_is_y = ref_is_y;
  args.order = static_cast<int>(order);
  args.partial_sums = reduce ? partial.mutable_data_ptr() : nullptr;
  if (use_avx2(IsaOp::BiasAct)) {
    kernels_avx2::bias_act_grad(args);
  } else {
    kernels_default::bias_act_grad(args);
  }
  if (reduce) reduce_partials(partial, plan.layout, rows.layout, plan.sums);
  return {plan.out, plan.sums};
}

}  // namespace
}  // namespace fastgan::cpu

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("bias_act", &fastgan::cpu::bias_act_cpu);
  m.impl("bias_act_grad", &fastgan::cpu::bias_act_grad_cpu);
}
