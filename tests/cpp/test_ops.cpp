// The ops as the fastgan_ops library registers them, called through the dispatcher (so
// through the C++ autograd kernels down to the CPU kernels) on small CPU tensors, against
// ATen: bias_act (lrelu, clamp), grad_sqnorm, grad_penalty, upfirdn2d; both CPU kernel
// copies where the ISA dispatch offers two. Exits non-zero on any failure.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <cstdio>
#include <optional>
#include <string>

#include "cpu/dispatch.h"

static int passed = 0, failures = 0;

static void check(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failures;
    std::printf("FAIL %s\n", what.c_str());
  }
}

static bool close(const at::Tensor& got, const at::Tensor& want, double rtol = 1e-5,
                  double atol = 1e-6) {
  return got.sizes() == want.sizes() && got.scalar_type() == want.scalar_type() &&
         at::allclose(got, want, rtol, atol);
}

static c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

static void test_bias_act(const std::string& copy) {
  auto bias_act = op("fastgan::bias_act")
                      .typed<at::Tensor(const at::Tensor&, const std::optional<at::Tensor>&,
                                        int64_t, c10::string_view, double, double, double)>();
  const double alpha = 0.2, gain = std::sqrt(2.0);
  for (const bool channels_last : {false, true}) {
    at::Tensor x = at::randn({2, 5, 7, 6});
    if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    const at::Tensor b = at::randn({5});
    const at::Tensor z = x + b.view({1, 5, 1, 1});
    const std::string where = " (" + copy + (channels_last ? ", channels_last)" : ")");
    check(close(bias_act.call(x, b, 1, "lrelu", alpha, gain, -1.0), at::leaky_relu(z, alpha) * gain),
          "bias_act lrelu" + where);
    check(close(bias_act.call(x, b, 1, "lrelu", alpha, gain, 0.5),
                at::clamp(at::leaky_relu(z, alpha) * gain, -0.5, 0.5)),
          "bias_act lrelu clamp" + where);
    check(close(bias_act.call(x, std::nullopt, 1, "tanh", 0.0, 1.0, -1.0), at::tanh(x)),
          "bias_act tanh, no bias" + where);
  }
}

static void test_grad_sqnorm() {
  auto grad_sqnorm = op("fastgan::grad_sqnorm").typed<at::Tensor(const at::Tensor&)>();
  // 3 * 70 * 80 elements per sample: more than one of the kernel's chunks.
  const at::Tensor g = at::randn({4, 3, 70, 80});
  check(close(grad_sqnorm.call(g), g.pow(2).sum({1, 2, 3}), 1e-4), "grad_sqnorm float32");
  const at::Tensor gd = g.to(at::kDouble);
  check(close(grad_sqnorm.call(gd), gd.pow(2).sum({1, 2, 3}), 1e-12, 0.0), "grad_sqnorm float64");
  const at::Tensor gcl = g.contiguous(at::MemoryFormat::ChannelsLast);
  check(close(grad_sqnorm.call(gcl), g.pow(2).sum({1, 2, 3}), 1e-4), "grad_sqnorm channels_last");
  const at::Tensor gh = g.to(at::kBFloat16);
  check(close(grad_sqnorm.call(gh), gh.to(at::kFloat).pow(2).sum({1, 2, 3}), 1e-4),
        "grad_sqnorm bfloat16 (float32 result)");

  auto grad_penalty = op("fastgan::grad_penalty")
                          .typed<at::Tensor(const at::Tensor&, double, c10::string_view)>();
  const at::Tensor sq = g.pow(2).sum({1, 2, 3});
  check(close(grad_penalty.call(g, 0.0, "mean"), sq.mean(), 1e-4), "grad_penalty center 0, mean");
  check(close(grad_penalty.call(g, 1.0, "none"), (sq.sqrt() - 1).pow(2), 1e-4),
        "grad_penalty center 1, none");
}

static void test_upfirdn2d(const std::string& copy) {
  auto upfirdn2d = op("fastgan::upfirdn2d")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                                         int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                         bool, double)>();
  const at::Tensor x = at::randn({2, 3, 9, 10});
  const at::Tensor one = at::ones({1});
  check(close(upfirdn2d.call(x, one, 1, 1, 1, 1, 0, 0, 0, 0, false, 1.0), x),
        "upfirdn2d identity filter (" + copy + ")");
  check(close(upfirdn2d.call(x, one, 1, 1, 2, 2, 0, 0, 0, 0, false, 3.0),
              x.slice(2, 0, 9, 2).slice(3, 0, 10, 2) * 3),
        "upfirdn2d down 2, gain 3 (" + copy + ")");
  // Up 2 with the box filter [1, 1] (separable), padded by one before: nearest neighbour.
  check(close(upfirdn2d.call(x, at::ones({2}), 2, 2, 1, 1, 1, 0, 1, 0, false, 1.0),
              x.repeat_interleave(2, 2).repeat_interleave(2, 3)),
        "upfirdn2d up 2, box filter (" + copy + ")");
}

int main() {
  at::manual_seed(0);
  const auto report = fastgan::cpu::isa_report();
  check(report.size() == 4, "isa_report names the four ops with two CPU kernel copies");
  bool avx2_usable = true;
  for (const auto& r : report) avx2_usable = avx2_usable && r.avx2_active;

  for (const int choice : {1, 2}) {
    if (choice == 2 && !avx2_usable) {
      std::printf("skipped: AVX2 kernel copies (not compiled or not this CPU)\n");
      continue;
    }
    fastgan::cpu::set_kernel_choice(choice);
    const std::string copy = choice == 1 ? "default" : "avx2";
    for (const auto& r : fastgan::cpu::isa_report()) {
      check(r.avx2_active == (choice == 2), std::string("isa_report ") + r.op + " follows " + copy);
    }
    test_bias_act(copy);
    test_upfirdn2d(copy);
  }
  fastgan::cpu::set_kernel_choice(0);
  test_grad_sqnorm();

  std::printf("%d passed, %d failed\n", passed, failures);
  return failures == 0 ? 0 : 1;
}
