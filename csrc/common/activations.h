// Activation math shared by the CPU kernels, the CUDA kernels and the C++ unit tests.
//
// Every function is a template over the value type V so that one definition serves
//   - scalars (float, double) on the host and on the device, and
//   - at::vec::Vectorized<float|double> in the CPU kernels (which add overloads of the
//     fg_* primitives below for vector types; see csrc/cpu/bias_act_kernel.h).
// Only the primitives fg_exp, fg_expm1, fg_log1p, fg_tanh, fg_erf, fg_abs and fg_select
// differ between scalar and vector code; the formulas are written once.
//
// Notation: z = x + b is the pre-activation, a = f(z) the activation, and the op's
// output is y = clamp(gain * a, -clamp, clamp).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FG_HD __host__ __device__ __forceinline__
#else
#define FG_HD inline
#endif

namespace fastgan {

// The order matters: it is the integer code used by the kernels and the C++ tests.
enum class Act : int {
  Linear = 0,
  ReLU = 1,
  LReLU = 2,
  Tanh = 3,
  Sigmoid = 4,
  ELU = 5,
  SELU = 6,
  Softplus = 7,
  Swish = 8,
  GELU = 9,
};
constexpr int kNumActs = 10;

// Piecewise-linear activations have a zero second derivative: double backward through
// them costs a single first-order pass.
FG_HD bool act_is_piecewise_linear(Act a) {
  return a == Act::Linear || a == Act::ReLU || a == Act::LReLU;
}

// Whether f'(z) (and the next derivative) can be recovered from a = f(z) alone. Swish and
// GELU are not monotonic, so they need z.
FG_HD bool act_derivative_from_output(Act a) { return a != Act::Swish && a != Act::GELU; }

namespace math {

// --- scalar primitives (host and device) ---
FG_HD float fg_exp(float v) { return ::expf(v); }
FG_HD double fg_exp(double v) { return ::exp(v); }
FG_HD float fg_expm1(float v) { return ::expm1f(v); }
FG_HD double fg_expm1(double v) { return ::expm1(v); }
FG_HD float fg_log1p(float v) { return ::log1pf(v); }
FG_HD double fg_log1p(double v) { return ::log1p(v); }
FG_HD float fg_tanh(float v) { return ::tanhf(v); }
FG_HD double fg_tanh(double v) { return ::tanh(v); }
FG_HD float fg_erf(float v) { return ::erff(v); }
FG_HD double fg_erf(double v) { return ::erf(v); }
FG_HD float fg_abs(float v) { return ::fabsf(v); }
FG_HD double fg_abs(double v) { return ::fabs(v); }
template <typename T>
FG_HD T fg_select(bool cond, T if_true, T if_false) {
  return cond ? if_true : if_false;
}

// SELU constants (Klambauer et al. 2017), as used by torch.nn.functional.selu.
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSqrtHalf = 0.70710678118654752440084436210485;    // 1/sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267793994605993438;  // 1/sqrt(2*pi)

template <typename V>
FG_HD V sigmoid(V z) {
  return V(1.0) / (V(1.0) + fg_exp(-z));
}

// f(z). Comparisons are written so that NaN propagates (NaN < 0 is false).
template <Act A, typename V>
FG_HD V act_forward(V z, V alpha) {
  if constexpr (A == Act::Linear) {
    return z;
  } else if constexpr (A == Act::ReLU) {
    return fg_select(z < V(0.0), V(0.0), z);
  } else if constexpr (A == Act::LReLU) {
    return fg_select(z < V(0.0), z * alpha, z);
  } else if constexpr (A == Act::Tanh) {
    return fg_tanh(z);
  } else if constexpr (A == Act::Sigmoid) {
    return sigmoid(z);
  } else if constexpr (A == Act::ELU) {
    return fg_select(z < V(0.0), fg_expm1(z), z);
  } else if constexpr (A == Act::SELU) {
    return V(kSeluScale) * fg_select(z < V(0.0), V(kSeluAlpha) * fg_expm1(z), z);
  } else if constexpr (A == Act::Softplus) {
    // log(1 + e^z) = max(z, 0) + log1p(e^-|z|): no overflow for large |z|.
    return fg_select(z < V(0.0), V(0.0), z) + fg_log1p(fg_exp(-fg_abs(z)));
  } else if constexpr (A == Act::Swish) {
    return z * sigmoid(z);
  } else {  // GELU, exact (erf) form
    return V(0.5) * z * (V(1.0) + fg_erf(z * V(kSqrtHalf)));
  }
}

// f'(z), from z.
template <Act A, typename V>
FG_HD V act_d1_from_x(V z, V alpha) {
  if constexpr (A == Act::Linear) {
    return V(1.0);
  } else if constexpr (A == Act::ReLU) {
    return fg_select(z > V(0.0), V(1.0), V(0.0));
  } else if constexpr (A == Act::LReLU) {
    return fg_select(z > V(0.0), V(1.0), alpha);
  } else if constexpr (A == Act::Tanh) {
    V t = fg_tanh(z);
    return V(1.0) - t * t;
  } else if constexpr (A == Act::Sigmoid) {
    V s = sigmoid(z);
    return s * (V(1.0) - s);
  } else if constexpr (A == Act::ELU) {
    return fg_select(z > V(0.0), V(1.0), fg_exp(z));
  } else if constexpr (A == Act::SELU) {
    return fg_select(z > V(0.0), V(kSeluScale), V(kSeluScale * kSeluAlpha) * fg_exp(z));
  } else if constexpr (A == Act::Softplus) {
    return sigmoid(z);
  } else if constexpr (A == Act::Swish) {
    V s = sigmoid(z);
    return s * (V(1.0) + z * (V(1.0) - s));
  } else {  // GELU: Phi(z) + z * phi(z)
    V cdf = V(0.5) * (V(1.0) + fg_erf(z * V(kSqrtHalf)));
    V pdf = V(kInvSqrt2Pi) * fg_exp(V(-0.5) * z * z);
    return cdf + z * pdf;
  }
}

// f''(z), from z.
template <Act A, typename V>
FG_HD V act_d2_from_x(V z, V alpha) {
  (void)alpha;
  if constexpr (A == Act::Linear || A == Act::ReLU || A == Act::LReLU) {
    return V(0.0);
  } else if constexpr (A == Act::Tanh) {
    V t = fg_tanh(z);
    return V(-2.0) * t * (V(1.0) - t * t);
  } else if constexpr (A == Act::Sigmoid) {
    V s = sigmoid(z);
    return s * (V(1.0) - s) * (V(1.0) - V(2.0) * s);
  } else if constexpr (A == Act::ELU) {
    return fg_select(z > V(0.0), V(0.0), fg_exp(z));
  } else if constexpr (A == Act::SELU) {
    return fg_select(z > V(0.0), V(0.0), V(kSeluScale * kSeluAlpha) * fg_exp(z));
  } else if constexpr (A == Act::Softplus) {
    V s = sigmoid(z);
    return s * (V(1.0) - s);
  } else if constexpr (A == Act::Swish) {
    V s = sigmoid(z);
    return s * (V(1.0) - s) * (V(2.0) + z * (V(1.0) - V(2.0) * s));
  } else {  // GELU: phi(z) * (2 - z^2)
    return V(kInvSqrt2Pi) * fg_exp(V(-0.5) * z * z) * (V(2.0) - z * z);
  }
}

// f'(z) written as a function D(a) of the activation a = f(z) (only where
// act_derivative_from_output). For relu/lrelu this needs alpha >= 0 so that a > 0 <=> z > 0.
template <Act A, typename V>
FG_HD V act_d1_from_y(V a, V alpha) {
  if constexpr (A == Act::Linear) {
    return V(1.0);
  } else if constexpr (A == Act::ReLU) {
    return fg_select(a > V(0.0), V(1.0), V(0.0));
  } else if constexpr (A == Act::LReLU) {
    return fg_select(a > V(0.0), V(1.0), alpha);
  } else if constexpr (A == Act::Tanh) {
    return V(1.0) - a * a;
  } else if constexpr (A == Act::Sigmoid) {
    return a * (V(1.0) - a);
  } else if constexpr (A == Act::ELU) {
    return fg_select(a > V(0.0), V(1.0), a + V(1.0));
  } else if constexpr (A == Act::SELU) {
    return fg_select(a > V(0.0), V(kSeluScale), a + V(kSeluScale * kSeluAlpha));
  } else if constexpr (A == Act::Softplus) {
    return -fg_expm1(-a);  // sigmoid(z) = 1 - e^-a
  } else {
    return V(0.0);  // not reachable: swish and gelu always use z
  }
}

// dD/da: the derivative of act_d1_from_y with respect to its argument. Double backward
// through an op that saved y differentiates the first-order formula with respect to y.
template <Act A, typename V>
FG_HD V act_d2_from_y(V a, V alpha) {
  (void)alpha;
  if constexpr (A == Act::Tanh) {
    return V(-2.0) * a;
  } else if constexpr (A == Act::Sigmoid) {
    return V(1.0) - V(2.0) * a;
  } else if constexpr (A == Act::ELU) {
    return fg_select(a > V(0.0), V(0.0), V(1.0));
  } else if constexpr (A == Act::SELU) {
    return fg_select(a > V(0.0), V(0.0), V(1.0));
  } else if constexpr (A == Act::Softplus) {
    return fg_exp(-a);
  } else {
    return V(0.0);  // piecewise linear (and unreachable swish/gelu)
  }
}

// Clamp that propagates NaN (a plain min/max pair may not).
template <typename V>
FG_HD V clamp_symmetric(V s, V c) {
  return fg_select(s > c, c, fg_select(s < -c, -c, s));
}

}  // namespace math

// The scalar parameters of one bias_act call in the compute type A, shared by the CPU and
// CUDA kernels (passed to kernels by value). inv_gain is 1 / gain, or 0 when gain == 0;
// clamp < 0 means no clamp.
template <typename A>
struct ActParams {
  A alpha, gain, inv_gain, clamp;
  bool has_clamp;
};

template <typename A>
inline ActParams<A> make_act_params(double alpha, double gain, double clamp) {
  ActParams<A> p;
  p.alpha = static_cast<A>(alpha);
  p.gain = static_cast<A>(gain);
  p.inv_gain = gain != 0.0 ? static_cast<A>(1.0 / gain) : A(0);
  p.clamp = static_cast<A>(clamp);
  p.has_clamp = clamp >= 0.0;
  return p;
}

// The complete per-element forward: y = clamp(gain * f(z)).
template <Act A, typename V>
FG_HD V bias_act_forward_elem(V z, V alpha, V gain, V clamp, bool has_clamp) {
  V s = math::act_forward<A>(z, alpha) * gain;
  return has_clamp ? math::clamp_symmetric(s, clamp) : s;
}

// The per-element backward factor that multiplies the incoming gradient.
//   order 1, from x (ref = z):  gain * f'(z)          (zero where clamped)
//   order 1, from y (ref = y):  gain * D(y / gain)    (zero where |y| >= clamp)
//   order 2, from x:            gain * f''(z)
//   order 2, from y:            D'(y / gain)          (the derivative of order 1 w.r.t. y)
// "Clamped" is tested on y when the reference is y, else on gain * f(z). inv_gain is
// 1 / gain, or 0 when gain == 0 (every derivative is then zero). The flags are uniform
// over a call, so vector code branches on them once per vector, predictably.
template <Act A, typename V>
FG_HD V bias_act_grad_factor(V ref, V alpha, V gain, V inv_gain, V clamp, bool has_clamp,
                             bool ref_is_y, int order) {
  V factor, s;
  if (ref_is_y) {
    V a = ref * inv_gain;
    factor = (order == 1) ? V(math::act_d1_from_y<A>(a, alpha) * gain)
                          : V(math::act_d2_from_y<A>(a, alpha));
    s = ref;
  } else {
    factor = (order == 1) ? V(math::act_d1_from_x<A>(ref, alpha) * gain)
                          : V(math::act_d2_from_x<A>(ref, alpha) * gain);
    s = has_clamp ? V(math::act_forward<A>(ref, alpha) * gain) : V(0.0);
  }
  if (has_clamp) {
    factor = math::fg_select(math::fg_abs(s) < clamp, factor, V(0.0));
  }
  return factor;
}

}  // namespace fastgan

// Expands to a switch that runs __VA_ARGS__ with `constexpr fastgan::Act kAct` bound to the
// runtime activation `act`.
#define FG_ACT_CASE(NAME, ...)                       \
  case fastgan::Act::NAME: {                         \
    constexpr fastgan::Act kAct = fastgan::Act::NAME; \
    __VA_ARGS__();                                   \
    break;                                           \
  }
#define FG_DISPATCH_ACT(act, ...)                             \
  switch (act) {                                              \
    FG_ACT_CASE(Linear, __VA_ARGS__)                          \
    FG_ACT_CASE(ReLU, __VA_ARGS__)                            \
    FG_ACT_CASE(LReLU, __VA_ARGS__)                           \
    FG_ACT_CASE(Tanh, __VA_ARGS__)                            \
    FG_ACT_CASE(Sigmoid, __VA_ARGS__)                         \
    FG_ACT_CASE(ELU, __VA_ARGS__)                             \
    FG_ACT_CASE(SELU, __VA_ARGS__)                            \
    FG_ACT_CASE(Softplus, __VA_ARGS__)                        \
    FG_ACT_CASE(Swish, __VA_ARGS__)                           \
    FG_ACT_CASE(GELU, __VA_ARGS__)                            \
    default:                                                  \
      break; /* unreachable: callers parse act names first */  \
  }
