// The schemas of every fastgan op, in one place. Kernels register per device key in
// cpu/ and cuda/; fake kernels and autograd are registered from Python
// (fastgan/ops/*.py) with torch.library.
#include <torch/library.h>

TORCH_LIBRARY(fastgan, m) {
  // y = clamp(act(x + b broadcast along dim, alpha) * gain, -clamp, clamp); clamp < 0: none.
  m.def(
      "bias_act(Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float clamp)"
      " -> Tensor");
  // out = grad * (derivative of order `order` of the map above, taken w.r.t. ref), where
  // ref is x (then b is added in the kernel) or the output y (ref_is_y). The second result
  // is out summed over every dim but `dim` when reduce, else an empty tensor.
  m.def(
      "bias_act_grad(Tensor grad, Tensor ref, Tensor? b, int dim, str act, float alpha,"
      " float gain, float clamp, bool ref_is_y, int order, bool reduce) -> (Tensor, Tensor)");
  // Per-sample squared L2 norm: out[n] = sum(grads[n]^2), float32 (float64 for float64
  // input). The building block of the gradient penalties (fastgan/ops/grad_penalty.py).
  m.def("grad_sqnorm(Tensor grads) -> Tensor");
  // The gradient penalty of a batch (fastgan/ops/grad_penalty.py): p_n = ||g_n||^2 for
  // center 0, (||g_n|| - center)^2 otherwise (center^2 with gradient 0 at a zero norm),
  // reduced by mean, sum or none. Composite: grad_sqnorm, then ATen on the N norms.
  m.def("grad_penalty(Tensor grads, float center, str reduction) -> Tensor");
  // FIR resampling (StyleGAN2-ADA contract): insert up-1 zeros per pixel, pad (negative
  // crops), convolve with f (1-D: separable x then y; flip: correlate) scaled by gain,
  // keep every down-th pixel. f is float32 and is not differentiated.
  m.def(
      "upfirdn2d(Tensor x, Tensor f, int upx, int upy, int downx, int downy, int padx0,"
      " int padx1, int pady0, int pady1, bool flip, float gain) -> Tensor");
  // FIR filter (correlation with f: separable fy ++ fx, or full fh x fw; pad = [px0, px1,
  // py0, py1], negative crops) + bias + activation + gain + clamp in one pass. Returns
  // (y, saved): saved is a uint8 mask (piecewise-linear acts), the pre-activation z
  // (smooth acts) or empty (linear without clamp) -- what fir_bias_act_grad needs. y and
  // saved have layout out_format (contiguous or channels_last; default: x's).
  m.def(
      "fir_bias_act(Tensor x, Tensor? b, float[] f, int fh, int fw, bool separable, int[] pad,"
      " str act, float alpha, float gain, float clamp, MemoryFormat? out_format=None)"
      " -> (Tensor, Tensor)");
  // The adjoint: g = grad * dy/dz (from saved) + gz, gx = the transposed FIR filter of g
  // (size in_h x in_w), gb = sum of g over n, h, w when reduce (else empty).
  m.def(
      "fir_bias_act_grad(Tensor grad, Tensor saved, Tensor? gz, float[] f, int fh, int fw,"
      " bool separable, int[] pad, int in_h, int in_w, str act, float alpha, float gain,"
      " float clamp, bool reduce) -> (Tensor, Tensor)");
  // Batch normalization followed by bias_act's activation, in one pass forward (after one
  // pass for the batch statistics when training) and two passes backward:
  //   y = clamp(act(weight * (x - mean) * invstd + bias, alpha) * gain, -clamp, clamp)
  // over channel dim 1. training: mean and invstd = 1 / sqrt(var + eps) of the batch (biased
  // var); else from running_mean / running_var, which the op only reads. Returns (y, mean,
  // invstd, var): var is what a running variance averages, the unbiased batch variance when
  // training (running_var when not); the statistics are float32 (float64 for float64 x).
  m.def(
      "batch_norm_act(Tensor x, Tensor? weight, Tensor? bias, Tensor? running_mean,"
      " Tensor? running_var, bool training, float eps, str act, float alpha, float gain,"
      " float clamp) -> (Tensor, Tensor, Tensor, Tensor)");
  // The backward for the saved (mean, invstd): (grad_x, grad_weight, grad_bias); an output
  // not in output_mask (or for an absent weight / bias) is an empty tensor.
  m.def(
      "batch_norm_act_backward(Tensor grad, Tensor x, Tensor? weight, Tensor? bias,"
      " Tensor save_mean, Tensor save_invstd, bool training, str act, float alpha, float gain,"
      " float clamp, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
}
