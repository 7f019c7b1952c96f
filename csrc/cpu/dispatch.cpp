// The CPU ISA choice (see dispatch.h): one switch and one CPU check for every op.
#include "dispatch.h"

#include <ATen/Version.h>

#include <atomic>
#include <string>

namespace fastgan::cpu {
namespace {

std::atomic<int> g_kernel_choice{0};

bool cpu_supports_avx2() {
  // Read once: at::get_cpu_capability() reads ATEN_CPU_CAPABILITY, which is the way to
  // force the baseline kernels from outside the process.
  static const bool ok = [] {
    const std::string cap = at::get_cpu_capability();
    return cap == "AVX2" || cap == "AVX512";
  }();
  return ok;
}

struct IsaEntry {
  const char* op;
  bool (*compiled)();
};

// In IsaOp order.
constexpr std::array<IsaEntry, kNumIsaOps> kIsaOps = {{
    {"bias_act", &bias_act_avx2_compiled},
    {"batch_norm_act", &batch_norm_act_avx2_compiled},
    {"fir_bias_act", &fir_bias_act_avx2_compiled},
    {"upfirdn2d", &upfirdn2d_avx2_compiled},
}};

}  // namespace

bool use_avx2(IsaOp op) {
  const int choice = g_kernel_choice.load(std::memory_order_relaxed);
  if (choice == 1 || !kIsaOps[static_cast<int>(op)].compiled()) return false;
  return cpu_supports_avx2();  // choice 2 still requires the CPU to have it
}

std::array<OpIsa, kNumIsaOps> isa_report() {
  std::array<OpIsa, kNumIsaOps> out{};
  for (int i = 0; i < kNumIsaOps; ++i) {
    out[i] = {kIsaOps[i].op, kIsaOps[i].compiled(), use_avx2(static_cast<IsaOp>(i))};
  }
  return out;
}

void set_kernel_choice(int choice) { g_kernel_choice.store(choice); }

}  // namespace fastgan::cpu
