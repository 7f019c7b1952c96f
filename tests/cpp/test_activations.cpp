// Unit tests of the activation math shared by the CPU and CUDA kernels
// (csrc/common/activations.h): values at known points, derivatives against central
// differences in double precision, and the y-based formulas against the x-based ones.
// Prints how many checks passed and failed; exits non-zero on any failure.
#include <cmath>
#include <cstdio>

#include "common/activations.h"

using fastgan::Act;
namespace m = fastgan::math;

static int passed = 0, failures = 0;
static void check(bool ok, const char* what, int act, double z, double got, double want) {
  if (ok) {
    ++passed;
    return;
  }
  ++failures;
  std::printf("FAIL %s act=%d z=%g got=%.17g want=%.17g\n", what, act, z, got, want);
}
static bool near(double a, double b, double tol) { return std::fabs(a - b) <= tol * (1 + std::fabs(b)); }

template <Act A>
void test_act() {
  const double alpha = 0.2, h = 1e-5;
  const int id = static_cast<int>(A);
  for (double z = -4.0; z <= 4.0; z += 0.173) {
    if (std::fabs(z) < 2 * h) continue;  // kink of the piecewise-linear activations
    const double f = m::act_forward<A>(z, alpha);
    const double d1 = m::act_d1_from_x<A>(z, alpha);
    const double d2 = m::act_d2_from_x<A>(z, alpha);
    const double fd1 = (m::act_forward<A>(z + h, alpha) - m::act_forward<A>(z - h, alpha)) / (2 * h);
    const double fd2 = (m::act_d1_from_x<A>(z + h, alpha) - m::act_d1_from_x<A>(z - h, alpha)) / (2 * h);
    check(near(d1, fd1, 1e-6), "d1_from_x", id, z, d1, fd1);
    check(near(d2, fd2, 1e-5), "d2_from_x", id, z, d2, fd2);
    if (fastgan::act_derivative_from_output(A)) {
      const double d1y = m::act_d1_from_y<A>(f, alpha);
      check(near(d1y, d1, 1e-9), "d1_from_y", id, z, d1y, d1);
      // d/da of D(a), times da/dz = f'(z), must equal f''(z)
      const double d2y = m::act_d2_from_y<A>(f, alpha) * d1;
      check(near(d2y, d2, 1e-9), "d2_from_y", id, z, d2y, d2);
    }
    // float and double agree (the CUDA and CPU kernels compute half types in float)
    const float ff = m::act_forward<A>(static_cast<float>(z), static_cast<float>(alpha));
    check(near(ff, f, 1e-5), "float_vs_double", id, z, ff, f);
  }
}

int main() {
  test_act<Act::Linear>();
  test_act<Act::ReLU>();
  test_act<Act::LReLU>();
  test_act<Act::Tanh>();
  test_act<Act::Sigmoid>();
  test_act<Act::ELU>();
  test_act<Act::SELU>();
  test_act<Act::Softplus>();
  test_act<Act::Swish>();
  test_act<Act::GELU>();
  // known values
  const double gelu1 = m::act_forward<Act::GELU>(1.0, 0.0), softplus50 = m::act_forward<Act::Softplus>(50.0, 0.0);
  check(near(gelu1, 0.8413447460685429, 1e-12), "gelu(1)", 9, 1, gelu1, 0.8413447460685429);
  check(near(softplus50, 50.0, 1e-12), "softplus(50)", 7, 50, softplus50, 50.0);
  check(std::isnan(m::act_forward<Act::ReLU>(double(NAN), 0.0)), "relu(nan)", 1, NAN, 0, 0);
  check(std::isnan(m::clamp_symmetric(double(NAN), 1.0)), "clamp(nan)", -1, NAN, 0, 0);
  // clamped elements get no gradient; gain 0 gives zero gradient, not NaN
  const double g = fastgan::bias_act_grad_factor<Act::LReLU>(3.0, 0.2, 1.0, 1.0, 2.0, true, true, 1);
  check(g == 0.0, "clamped grad", 2, 3, g, 0);
  const double g0 = fastgan::bias_act_grad_factor<Act::Tanh>(0.0, 0.0, 0.0, 0.0, -1.0, false, true, 1);
  check(g0 == 0.0, "gain 0", 3, 0, g0, 0);
  std::printf("%d passed, %d failed\n", passed, failures);
  return failures == 0 && passed > 0 ? 0 : 1;
}
