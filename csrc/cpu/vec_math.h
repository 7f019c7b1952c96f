// Vector overloads of the primitives used by the activation formulas in
// common/activations.h, so that the same templates run on at::vec::Vectorized in the CPU
// kernels. Include this before activations.h (directly or through another header).
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

namespace fastgan::math {
template <typename T>
inline at::vec::Vectorized<T> fg_exp(const at::vec::Vectorized<T>& v) { return v.exp(); }
template <typename T>
inline at::vec::Vectorized<T> fg_expm1(const at::vec::Vectorized<T>& v) { return v.expm1(); }
template <typename T>
inline at::vec::Vectorized<T> fg_log1p(const at::vec::Vectorized<T>& v) { return v.log1p(); }
template <typename T>
inline at::vec::Vectorized<T> fg_tanh(const at::vec::Vectorized<T>& v) { return v.tanh(); }
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
// float tanh for the vector ISAs: Sleef's tanhf (what Vectorized<float>::tanh calls) measured
// ~9x slower than torch.tanh here. Below |z| = 0.35 the odd Taylor series to z^11 (the next
// term is < 1.3e-8 relative there); above, 1 - 2 / (1 + exp(2|z|)), which has no
// cancellation since tanh(0.35) > 0.33. The sign of z is copied back; NaN stays NaN (the
// comparison is false, exp(NaN) is NaN) and large |z| gives exp = inf, hence exactly 1.
template <>
inline at::vec::Vectorized<float> fg_tanh(const at::vec::Vectorized<float>& v) {
  using V = at::vec::Vectorized<float>;
  const V sign_bit(-0.0f);
  const V a = v.abs();
  const V big = V(1.0f) - V(2.0f) / (V(1.0f) + (a + a).exp());
  const V a2 = a * a;
  V p(-1382.0f / 155925.0f);
  p = at::vec::fmadd(p, a2, V(62.0f / 2835.0f));
  p = at::vec::fmadd(p, a2, V(-17.0f / 315.0f));
  p = at::vec::fmadd(p, a2, V(2.0f / 15.0f));
  p = at::vec::fmadd(p, a2, V(-1.0f / 3.0f));
  const V small = at::vec::fmadd(a * a2, p, a);
  const V r = V::blendv(big, small, a < V(0.35f));
  return r | (v & sign_bit);
}
#endif
template <typename T>
inline at::vec::Vectorized<T> fg_erf(const at::vec::Vectorized<T>& v) { return v.erf(); }
template <typename T>
inline at::vec::Vectorized<T> fg_abs(const at::vec::Vectorized<T>& v) { return v.abs(); }
// mask lanes are all-ones (true) or all-zeros (false), as comparisons of Vectorized return.
template <typename T>
inline at::vec::Vectorized<T> fg_select(const at::vec::Vectorized<T>& mask,
                                        const at::vec::Vectorized<T>& if_true,
                                        const at::vec::Vectorized<T>& if_false) {
  return at::vec::Vectorized<T>::blendv(if_false, if_true, mask);
}
}  // namespace fastgan::math
