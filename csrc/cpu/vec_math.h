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
