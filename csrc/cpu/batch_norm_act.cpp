// CPU implementation of fastgan::batch_norm_act and fastgan::batch_norm_act_backward:
// tensor handling, batch statistics and per-channel coefficients; the passes over the
// tensor are in batch_norm_act_kernel.h.
//
//   forward:  [training] one pass for the per-channel sums, then y = act((x - mean) * a + bias)
//             in one pass, a = weight * invstd
//   backward: one pass for sum(g) and sum(g * (x - mean)) with g = dy * dy/dz recomputed
//             from x, then dx = s * g + t * (x - mean) + u in one pass
//
// Statistics are taken around a per-channel shift (the channel's first element), summed in
// float over bounded spans and in double across spans: no cancellation when |mean| >> std.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <array>
#include <cmath>
#include <vector>

#include "../common/batch_norm_act_common.h"
#include "batch_norm_act_cpu.h"
#include "cpu_memory.h"
#include "dispatch.h"

namespace fastgan::cpu {

namespace {

// Below this many elements per (n, c) row, rows are merged into [outer, C * inner] with
// per-column coefficients (channels_last: inner 1).
constexpr int64_t kMinRowLen = 16;
constexpr int64_t kChunkElems = 32768;

BnRows rows_of(const DenseLayout& l) {
  BnRows r;
  r.channels = l.channels;
  if (l.inner >= kMinRowLen || l.channels == 1) {
    r.rows = l.outer * l.channels;
    r.row_len = l.inner;
    r.vec_mode = false;
  } else {
    r.rows = l.outer;
    r.row_len = l.channels * l.inner;
    r.vec_mode = true;
    r.chunk_rows = std::max<int64_t>(1, kChunkElems / std::max<int64_t>(r.row_len, 1));
  }
  return r;
}

void run(const BnArgs& args) {
  if (use_avx2(IsaOp::BatchNormAct)) {
    kernels_avx2::batch_norm_act_pass(args);
  } else {
    kernels_default::batch_norm_act_pass(args);
  }
}

// Per-channel totals (double) of a reduce pass's partial sums.
void channel_totals(const BnRows& r, const DenseLayout& l, const std::vector<double>& partial,
                    std::vector<double>& out) {
  const int64_t C = l.channels, inner = l.inner;
  out.assign(C, 0.0);
  if (r.vec_mode) {
    const int64_t chunks = (r.rows + r.chunk_rows - 1) / r.chunk_rows;
    for (int64_t k = 0; k < chunks; ++k) {
      const double* p = partial.data() + k * r.row_len;
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t j = 0; j < inner; ++j) out[c] += p[c * inner + j];
      }
    }
  } else {
    for (int64_t row = 0; row < r.rows; ++row) out[row % C] += partial[row];
  }
}

size_t partial_size(const BnRows& r) {
  if (!r.vec_mode) return static_cast<size_t>(r.rows);
  const int64_t chunks = (r.rows + r.chunk_rows - 1) / r.chunk_rows;
  return static_cast<size_t>(chunks * r.row_len);
}

// Runs a reduce pass; returns the per-channel totals of its two sums.
void reduce_pass(BnArgs args, const DenseLayout& l, std::vector<double>& tot1,
                 std::vector<double>& tot2) {
  std::vector<double> p1(partial_size(args.layout)), p2(partial_size(args.layout));
  args.partial1 = p1.data();
  args.partial2 = p2.data();
  run(args);
  channel_totals(args.layout, l, p1, tot1);
  channel_totals(args.layout, l, p2, tot2);
}

// Per-channel values as the kernels' coefficient array: one per channel (row mode) or one
// per column (vec mode: each channel's value repeated `inner` times), in the compute type.
template <typename A>
std::vector<A> coef(const BnRows& r, const DenseLayout& l, const std::vector<double>& v) {
  if (!r.vec_mode) return std::vector<A>(v.begin(), v.end());
  std::vector<A> out(static_cast<size_t>(r.row_len));
  for (int64_t c = 0; c < l.channels; ++c) {
    for (int64_t j = 0; j < l.inner; ++j) out[c * l.inner + j] = static_cast<A>(v[c]);
  }
  return out;
}

// A 1-D per-channel tensor as doubles (1 when undefined and `fill` is 1, 0 for 0).
std::vector<double> as_doubles(const std::optional<at::Tensor>& t, int64_t C, double fill) {
  std::vector<double> out(C, fill);
  if (!defined(t)) return out;
  const at::Tensor tc = t->contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, tc.scalar_type(), "batch_norm_act_param", [&] {
    const scalar_t* p = tc.const_data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) out[c] = static_cast<double>(p[c]);
  });
  return out;
}

at::Tensor from_doubles(const std::vector<double>& v, const at::TensorOptions& opts) {
  at::Tensor t = at::empty({static_cast<int64_t>(v.size())}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "batch_norm_act_out", [&] {
    scalar_t* p = t.mutable_data_ptr<scalar_t>();
    for (size_t c = 0; c < v.size(); ++c) p[c] = static_cast<scalar_t>(v[c]);
  });
  return t;
}

at::ScalarType acc_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

BnArgs base_args(const at::Tensor& x, const BnRows& rows, Act act, double alpha, double gain,
                 double clamp) {
  BnArgs a;
  a.dtype = x.scalar_type();
  a.layout = rows;
  a.act = act;
  a.alpha = alpha;
  a.gain = gain;
  a.clamp = clamp;
  a.x = x.const_data_ptr();
  return a;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> batch_norm_act_cpu(
    const at::Tensor& x_in, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var, bool training, double eps, c10::string_view act,
    double alpha, double gain, double clamp) {
  const Act a = check_batch_norm_act_args(x_in, weight, bias, running_mean, running_var, training,
                                          eps, std::string_view(act.data(), act.size()), alpha,
                                          gain, clamp);
  const at::Tensor x = make_dense(x_in);
  const int64_t C = x.size(1);
  const DenseLayout l = dense_layout(x, 1);
  const BnRows rows = rows_of(l);
  const auto stat_opts = x.options().dtype(acc_type(x.scalar_type()));
  at::Tensor y = at::empty_like(x);
  std::vector<double> mean(C, 0.0), invstd(C, 0.0), running(C, 0.0);
  if (training) {
    const int64_t m = C > 0 ? x.numel() / C : 0;
    if (m > 0) {
      // shift: each channel's first element (memory offset c * inner in either mode)
      std::vector<double> shift(C);
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "batch_norm_act_shift", [&] {
        const scalar_t* px = x.const_data_ptr<scalar_t>();
        for (int64_t c = 0; c < C; ++c) shift[c] = static_cast<double>(px[c * l.inner]);
      });
      std::vector<double> s1, s2;
      BnArgs args = base_args(x, rows, a, alpha, gain, clamp);
      args.pass = BnPass::Stats;
      AT_DISPATCH_FLOATING_TYPES(acc_type(x.scalar_type()), "batch_norm_act_stats", [&] {
        const std::vector<scalar_t> k = coef<scalar_t>(rows, l, shift);
        args.p = k.data();
        reduce_pass(args, l, s1, s2);
      });
      for (int64_t c = 0; c < C; ++c) {
        const double d = s1[c] / static_cast<double>(m);
        const double var = std::max(s2[c] / static_cast<double>(m) - d * d, 0.0);
        mean[c] = shift[c] + d;
        invstd[c] = 1.0 / std::sqrt(var + eps);
        running[c] = var * static_cast<double>(m) / static_cast<double>(std::max<int64_t>(m - 1, 1));
      }
    } else {
      std::fill(mean.begin(), mean.end(), std::nan(""));
      std::fill(invstd.begin(), invstd.end(), std::nan(""));
      std::fill(running.begin(), running.end(), std::nan(""));
    }
  } else {
    mean = as_doubles(running_mean, C, 0.0);
    running = as_doubles(running_var, C, 1.0);
    for (int64_t c = 0; c < C; ++c) invstd[c] = 1.0 / std::sqrt(running[c] + eps);
  }
  if (x.numel() > 0) {
    advise_huge_pages(y);
    const std::vector<double> w = as_doubles(weight, C, 1.0), b = as_doubles(bias, C, 0.0);
    std::vector<double> scale(C);
    for (int64_t c = 0; c < C; ++c) scale[c] = w[c] * invstd[c];
    BnArgs args = base_args(x, rows, a, alpha, gain, clamp);
    args.pass = BnPass::Forward;
    args.out = y.mutable_data_ptr();
    AT_DISPATCH_FLOATING_TYPES(acc_type(x.scalar_type()), "batch_norm_act_forward", [&] {
      const std::vector<scalar_t> p = coef<scalar_t>(rows, l, scale), q = coef<scalar_t>(rows, l, b),
                                  r = coef<scalar_t>(rows, l, mean);
      args.p = p.data();
      args.q = q.data();
      args.r = r.data();
      run(args);
    });
  }
  return {y, from_doubles(mean, stat_opts), from_doubles(invstd, stat_opts),
          from_doubles(running, stat_opts)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x_in, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool training, c10::string_view act, double alpha,
    double gain, double clamp, std::array<bool, 3> output_mask) {
  const Act a = check_batch_norm_act_backward_args(grad, x_in, weight, bias, save_mean,
                                                   save_invstd, act, alpha, gain, clamp);
  const at::Tensor x = make_dense(x_in);
  const at::Tensor dy = match_strides(grad, x);
  const int64_t C = x.size(1);
  const int64_t m = C > 0 ? x.numel() / C : 0;
  const DenseLayout l = dense_layout(x, 1);
  const BnRows rows = rows_of(l);
  const bool need_dx = output_mask[0];
  const bool need_dw = output_mask[1] && defined(weight);
  const bool need_db = output_mask[2] && defined(bias);
  at::Tensor dx = need_dx ? at::empty_like(x) : at::empty({0}, x.options());
  at::Tensor dw, db;
  const std::vector<double> mean = as_doubles(save_mean, C, 0.0);
  const std::vector<double> invstd = as_doubles(save_invstd, C, 1.0);
  const std::vector<double> w = as_doubles(weight, C, 1.0), b = as_doubles(bias, C, 0.0);
  std::vector<double> scale(C);
  for (int64_t c = 0; c < C; ++c) scale[c] = w[c] * invstd[c];
  std::vector<double> sum_g(C, 0.0), sum_gx(C, 0.0);
  const bool need_sums = x.numel() > 0 && (need_dw || need_db || (need_dx && training));
  AT_DISPATCH_FLOATING_TYPES(acc_type(x.scalar_type()), "batch_norm_act_backward", [&] {
    const std::vector<scalar_t> p = coef<scalar_t>(rows, l, scale), q = coef<scalar_t>(rows, l, b),
                                r = coef<scalar_t>(rows, l, mean);
    if (need_sums) {
      BnArgs args = base_args(x, rows, a, alpha, gain, clamp);
      args.pass = BnPass::GradSums;
      args.dy = dy.const_data_ptr();
      args.p = p.data();
      args.q = q.data();
      args.r = r.data();
      reduce_pass(args, l, sum_g, sum_gx);
    }
    if (need_dx && x.numel() > 0) {
      advise_huge_pages(dx);
      std::vector<double> sv(C), tv(C, 0.0), uv(C, 0.0);
      for (int64_t c = 0; c < C; ++c) {
        sv[c] = scale[c];
        if (training) {
          // dx = w invstd (g - mean(g) - xhat mean(g xhat)), xhat = (x - mean) invstd
          tv[c] = -scale[c] * invstd[c] * invstd[c] * sum_gx[c] / static_cast<double>(m);
          uv[c] = -scale[c] * sum_g[c] / static_cast<double>(m);
        }
      }
      const std::vector<scalar_t> s = coef<scalar_t>(rows, l, sv), t = coef<scalar_t>(rows, l, tv),
                                  u = coef<scalar_t>(rows, l, uv);
      BnArgs args = base_args(x, rows, a, alpha, gain, clamp);
      args.pass = BnPass::GradInput;
      args.dy = dy.const_data_ptr();
      args.out = dx.mutable_data_ptr();
      args.p = p.data();
      args.q = q.data();
      args.r = r.data();
      args.s = s.data();
      args.t = t.data();
      args.u = u.data();
      run(args);
    }
  });
  if (need_dw) {
    std::vector<double> v(C);
    for (int64_t c = 0; c < C; ++c) v[c] = sum_gx[c] * invstd[c];
    dw = from_doubles(v, weight->options());
  } else {
    dw = at::empty({0}, defined(weight) ? weight->options() : x.options());
  }
  db = need_db ? from_doubles(sum_g, bias->options())
               : at::empty({0}, defined(bias) ? bias->options() : x.options());
  return {dx, dw, db};
}

}  // namespace
}  // namespace fastgan::cpu

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("batch_norm_act", &fastgan::cpu::batch_norm_act_cpu);
  m.impl("batch_norm_act_backward", &fastgan::cpu::batch_norm_act_backward_cpu);
}
