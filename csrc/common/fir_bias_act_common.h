// Host-side pieces of fastgan::fir_bias_act / fir_bias_act_grad shared by the CPU and CUDA
// implementations: filter description, argument checks naming the argument, output shapes
// and layouts, and what the forward saves for backward.
//
// The op computes, per channel plane,
//   z[h][w] = sum_{ty,tx} f[ty][tx] * xpad[h + ty][w + tx] + b[c],   xpad[r][s] = x[r - py0][s - px0]
//   y = clamp(gain * act(z, alpha), -clamp, clamp)
// (a correlation: callers pass the filter already flipped for a true convolution). The
// gradient op is the adjoint: g = grad * dy/dz, gx = correlation of g with the flipped
// filter and padding f - 1 - p, gb = sum of g over n, h, w.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <tuple>

#include "bias_act_common.h"

namespace fastgan {

constexpr int kFirMaxTaps = 8;

// What the forward saves for backward.
enum class FirSave : int {
  None = 0,  // linear without clamp: dy/dz is the constant gain
  Mask = 1,  // piecewise-linear: uint8, bit 0 = (z > 0), bit 1 = not clamped
  Z = 2,     // smooth activations: the pre-activation z, in the input dtype
};

inline FirSave fir_save_mode(Act act, double clamp) {
  if (act == Act::Linear && clamp < 0) return FirSave::None;
  return act_is_piecewise_linear(act) ? FirSave::Mask : FirSave::Z;
}

// Taps in correlation order. separable: fy = taps[0 .. fh), fx = taps[8 .. 8 + fw);
// full: taps[ty * fw + tx].
struct FirSpec {
  bool separable = true;
  int fh = 1, fw = 1;
  std::array<double, 64> taps{};
  int64_t px0 = 0, px1 = 0, py0 = 0, py1 = 0;

  double fy(int t) const { return taps[t]; }
  double fx(int t) const { return taps[kFirMaxTaps + t]; }
  double f2(int ty, int tx) const {
    return separable ? taps[ty] * taps[kFirMaxTaps + tx] : taps[ty * fw + tx];
  }
};

inline FirSpec parse_fir(c10::ArrayRef<double> f, int64_t fh, int64_t fw, bool separable,
                         c10::IntArrayRef pad, const char* op) {
  TORCH_CHECK_VALUE(fh >= 1 && fh <= kFirMaxTaps && fw >= 1 && fw <= kFirMaxTaps, op,
                    ": filter size must be 1..", kFirMaxTaps, " taps per axis, got fh=", fh,
                    ", fw=", fw);
  const int64_t expect = separable ? fh + fw : fh * fw;
  TORCH_CHECK_VALUE(static_cast<int64_t>(f.size()) == expect, op, ": f has ", f.size(),
                    " taps but ", separable ? "fh + fw" : "fh * fw", " is ", expect);
  TORCH_CHECK_VALUE(pad.size() == 4, op, ": pad must be [px0, px1, py0, py1], got ",
                    pad.size(), " values");
  FirSpec s;
  s.separable = separable;
  s.fh = static_cast<int>(fh);
  s.fw = static_cast<int>(fw);
  for (size_t i = 0; i < f.size(); ++i) {
    TORCH_CHECK_VALUE(std::isfinite(f[i]), op, ": f must be finite, got ", f[i]);
  }
  if (separable) {
    for (int t = 0; t < fh; ++t) s.taps[t] = f[t];
    for (int t = 0; t < fw; ++t) s.taps[kFirMaxTaps + t] = f[fh + t];
  } else {
    for (int64_t t = 0; t < fh * fw; ++t) s.taps[t] = f[t];
  }
  s.px0 = pad[0];
  s.px1 = pad[1];
  s.py0 = pad[2];
  s.py1 = pad[3];
  return s;
}

// The adjoint's filter: taps reversed, padding f - 1 - p.
inline FirSpec adjoint_fir(const FirSpec& s) {
  FirSpec a = s;
  if (s.separable) {
    for (int t = 0; t < s.fh; ++t) a.taps[t] = s.taps[s.fh - 1 - t];
    for (int t = 0; t < s.fw; ++t) a.taps[kFirMaxTaps + t] = s.taps[kFirMaxTaps + s.fw - 1 - t];
  } else {
    const int n = s.fh * s.fw;
    for (int t = 0; t < n; ++t) a.taps[t] = s.taps[n - 1 - t];
  }
  a.px0 = s.fw - 1 - s.px0;
  a.px1 = s.fw - 1 - s.px1;
  a.py0 = s.fh - 1 - s.py0;
  a.py1 = s.fh - 1 - s.py1;
  return a;
}

// The layout both ops use: channels_last when the driving tensor is channels_last (and not
// also contiguous), else contiguous.
inline bool fir_use_channels_last(const at::Tensor& t) {
  return !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

inline at::MemoryFormat fir_format(bool cl) {
  return cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// Geometry of one call: `src` is read (x forward, grad backward), `dst` written.
// `cl` is the layout the kernel works in; forward only, with `cl`: `dst_nchw` = y and saved
// are written in the contiguous layout, `src_nchw` = x is read from the contiguous layout
// (both transposed on the fly, in cache).
struct FirGeom {
  int64_t N = 0, C = 0, Hs = 0, Ws = 0, Hd = 0, Wd = 0;
  bool cl = false;
  bool dst_nchw = false;
  bool src_nchw = false;
};

struct FirForwardPlan {
  Act act;
  FirSave save;
  FirSpec fir;
  FirGeom g;
  bool out_cl = false;    // the layout y must have on return
  bool saved_cl = false;  // the layout saved must have on return
  at::Tensor x, b, y, saved;
};

inline void check_4d(const at::Tensor& t, const char* op, const char* what) {
  TORCH_CHECK_VALUE(t.dim() == 4, op, ": ", what, " must be 4-D [N, C, H, W], got shape ",
                    t.sizes());
  check_float_tensor(t, op, what);
}

// out_format: the layout of y (default: x's); saved is channels_last if x or y is.
// `fuse_layout`: the kernel can work in channels_last while reading a contiguous x or
// writing a contiguous y (CPU); otherwise y and saved are made in x's layout and the caller
// converts them (finish_fir_forward).
inline bool parse_out_format(const std::optional<at::MemoryFormat>& out_format, bool x_cl,
                             const char* op) {
  if (!out_format.has_value()) return x_cl;
  TORCH_CHECK_VALUE(*out_format == at::MemoryFormat::Contiguous ||
                        *out_format == at::MemoryFormat::ChannelsLast,
                    op, ": out_format must be torch.contiguous_format or torch.channels_last, got ",
                    *out_format);
  return *out_format == at::MemoryFormat::ChannelsLast;
}

inline FirForwardPlan plan_fir_forward(const at::Tensor& x, const std::optional<at::Tensor>& b,
                                       c10::ArrayRef<double> f, int64_t fh, int64_t fw,
                                       bool separable, c10::IntArrayRef pad,
                                       std::string_view act, double alpha, double gain,
                                       double clamp,
                                       const std::optional<at::MemoryFormat>& out_format,
                                       bool fuse_layout) {
  constexpr const char* op = "fir_bias_act";
  FirForwardPlan p;
  p.act = parse_act(act);
  check_4d(x, op, "x");
  check_bias(x, b, 1, op);
  check_params(alpha, gain, clamp, op);
  p.fir = parse_fir(f, fh, fw, separable, pad, op);
  p.save = fir_save_mode(p.act, clamp);
  FirGeom& g = p.g;
  g.N = x.size(0);
  g.C = x.size(1);
  g.Hs = x.size(2);
  g.Ws = x.size(3);
  g.Hd = g.Hs + p.fir.py0 + p.fir.py1 - fh + 1;
  g.Wd = g.Ws + p.fir.px0 + p.fir.px1 - fw + 1;
  TORCH_CHECK_VALUE(g.Hd >= 1 && g.Wd >= 1, op, ": pad ", pad,
                    " leaves an empty output for input size ", g.Hs, "x", g.Ws,
                    " and a ", fh, "x", fw, " filter");
  const bool x_cl = fir_use_channels_last(x);
  p.out_cl = parse_out_format(out_format, x_cl, op);
  // Working layout: channels_last if x or y is. When the kernel can (fuse_layout), a
  // contiguous x bound for a channels_last y is transposed as it is read, a channels_last x
  // bound for a contiguous y in the epilogue; otherwise y is converted afterwards.
  g.cl = fuse_layout ? (x_cl || p.out_cl) : x_cl;
  g.dst_nchw = fuse_layout && g.cl && !p.out_cl;
  g.src_nchw = fuse_layout && g.cl && !x_cl;
  p.x = x.contiguous(fir_format(x_cl));
  if (b.has_value() && b->defined()) p.b = b->contiguous();
  // y in out_format; saved in the working layout (channels_last if x or y is), where the
  // backward works too.
  p.saved_cl = x_cl || p.out_cl;
  p.y = at::empty({g.N, g.C, g.Hd, g.Wd},
                  x.options().memory_format(fir_format(fuse_layout ? p.out_cl : g.cl)));
  auto opts = x.options().memory_format(fir_format(g.cl));
  if (p.save == FirSave::Mask) {
    p.saved = at::empty({g.N, g.C, g.Hd, g.Wd}, opts.dtype(at::kByte));
  } else if (p.save == FirSave::Z) {
    p.saved = at::empty({g.N, g.C, g.Hd, g.Wd}, opts);
  } else {
    p.saved = at::empty({0}, x.options().dtype(at::kByte));
  }
  return p;
}

// y and saved in their promised layouts (a no-op when the kernel wrote them so).
inline std::tuple<at::Tensor, at::Tensor> finish_fir_forward(const FirForwardPlan& p) {
  return {p.y.contiguous(fir_format(p.out_cl)),
          p.saved.numel() > 0 ? p.saved.contiguous(fir_format(p.saved_cl)) : p.saved};
}

struct FirGradPlan {
  Act act;
  FirSave save;
  FirSpec fir;  // the adjoint filter
  FirGeom g;    // src = grad (output size), dst = gx (input size)
  at::Tensor grad, saved, gz, gx, gb;
  bool reduce = false;
};

inline FirGradPlan plan_fir_grad(const at::Tensor& grad, const at::Tensor& saved,
                                 const std::optional<at::Tensor>& gz, c10::ArrayRef<double> f,
                                 int64_t fh, int64_t fw, bool separable, c10::IntArrayRef pad,
                                 int64_t in_h, int64_t in_w, std::string_view act, double alpha,
                                 double gain, double clamp, bool reduce, bool fuse_layout) {
  constexpr const char* op = "fir_bias_act_grad";
  FirGradPlan p;
  p.act = parse_act(act);
  check_4d(grad, op, "grad");
  check_params(alpha, gain, clamp, op);
  const FirSpec fwd = parse_fir(f, fh, fw, separable, pad, op);
  p.fir = adjoint_fir(fwd);
  p.save = fir_save_mode(p.act, clamp);
  p.reduce = reduce;
  FirGeom& g = p.g;
  g.N = grad.size(0);
  g.C = grad.size(1);
  g.Hs = grad.size(2);
  g.Ws = grad.size(3);
  g.Hd = in_h;
  g.Wd = in_w;
  TORCH_CHECK_VALUE(in_h >= 1 && in_w >= 1 &&
                        in_h + fwd.py0 + fwd.py1 - fh + 1 == g.Hs &&
                        in_w + fwd.px0 + fwd.px1 - fw + 1 == g.Ws,
                    op, ": grad has spatial size ", g.Hs, "x", g.Ws,
                    " but the forward of an input of size ", in_h, "x", in_w, " with pad ", pad,
                    " gives ", in_h + fwd.py0 + fwd.py1 - fh + 1, "x",
                    in_w + fwd.px0 + fwd.px1 - fw + 1);
  // Working layout (and gx's): saved's, which the forward made in its working layout; with
  // nothing saved, grad's. A contiguous grad for channels_last work is transposed as it is
  // read when the kernel can (fuse_layout), else converted.
  const bool grad_cl = fir_use_channels_last(grad);
  g.cl = (p.save != FirSave::None && saved.dim() == 4) ? fir_use_channels_last(saved) : grad_cl;
  g.src_nchw = fuse_layout && g.cl && !grad_cl;
  const auto fmt = fir_format(g.cl);
  p.grad = g.src_nchw ? grad.contiguous() : grad.contiguous(fmt);
  if (p.save == FirSave::None) {
    TORCH_CHECK_VALUE(saved.numel() == 0, op, ": saved must be empty for act '",
                      std::string(act), "' without clamp");
  } else {
    TORCH_CHECK_VALUE(saved.sizes() == grad.sizes(), op, ": saved has shape ", saved.sizes(),
                      " but grad has shape ", grad.sizes());
    const auto want = p.save == FirSave::Mask ? at::kByte : grad.scalar_type();
    TORCH_CHECK_TYPE(saved.scalar_type() == want, op, ": saved must have dtype ", want,
                     " for act '", std::string(act), "', got ", saved.scalar_type());
    TORCH_CHECK(saved.device() == grad.device(), op, ": saved is on ", saved.device(),
                " but grad is on ", grad.device());
    p.saved = saved.contiguous(fmt);
  }
  if (gz.has_value() && gz->defined()) {
    TORCH_CHECK_VALUE(gz->sizes() == grad.sizes(), op, ": gz has shape ", gz->sizes(),
                      " but grad has shape ", grad.sizes());
    TORCH_CHECK_TYPE(gz->scalar_type() == grad.scalar_type(), op, ": gz has dtype ",
                     gz->scalar_type(), " but grad has dtype ", grad.scalar_type());
    TORCH_CHECK(gz->device() == grad.device(), op, ": gz is on ", gz->device(),
                " but grad is on ", grad.device());
    p.gz = gz->contiguous(fmt);
  }
  auto opts = grad.options().memory_format(fmt);
  p.gx = at::empty({g.N, g.C, g.Hd, g.Wd}, opts);
  p.gb = reduce ? at::empty({g.C}, grad.options()) : at::empty({0}, grad.options());
  return p;
}

// Per-element dy/dz from the saved tensor (shared by the CPU and CUDA kernels).
template <Act A, FirSave M, typename V>
FG_HD V fir_grad_factor(V saved_z, uint8_t mask, V alpha, V gain, V inv_gain, V clamp,
                        bool has_clamp) {
  if constexpr (M == FirSave::None) {
    return gain;
  } else if constexpr (M == FirSave::Mask) {
    if (!(mask & 2)) return V(0.0);
    if constexpr (A == Act::ReLU) {
      return (mask & 1) ? gain : V(0.0);
    } else if constexpr (A == Act::LReLU) {
      return (mask & 1) ? gain : V(alpha * gain);
    } else {
      return gain;
    }
  } else {
    return bias_act_grad_factor<A>(saved_z, alpha, gain, inv_gain, clamp, has_clamp, false, 1);
  }
}

// The mask byte for a piecewise-linear activation.
template <typename V>
FG_HD uint8_t fir_mask(V z, V y, V clamp, bool has_clamp) {
  const bool pos = z > V(0.0);
  const bool live = !has_clamp || math::fg_abs(y) < clamp;
  return static_cast<uint8_t>((pos ? 1 : 0) | (live ? 2 : 0));
}

}  // namespace fastgan
