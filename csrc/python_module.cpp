// fastgan._C: importing it registers the ops (static TORCH_LIBRARY blocks in the other
// files). The Python module itself only reports how it was built.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/version.h>

#include <string>

namespace fastgan::cpu {
bool avx2_kernels_compiled();
bool avx2_kernels_active();
void set_kernel_choice(int choice);
}  // namespace fastgan::cpu

#ifndef FG_CUDA_ARCHS
#define FG_CUDA_ARCHS ""
#endif
#ifndef FG_CUDA_VERSION
#define FG_CUDA_VERSION ""
#endif

namespace py = pybind11;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastgan's compiled kernels (ops are under torch.ops.fastgan)";
  m.def("build_info", [] {
    py::dict d;
#ifdef FG_WITH_CUDA
    d["cuda_compiled"] = true;
#else
    d["cuda_compiled"] = false;
#endif
    d["cuda_archs"] = std::string(FG_CUDA_ARCHS);
    d["cuda_version"] = std::string(FG_CUDA_VERSION);
    d["torch_version"] = std::to_string(TORCH_VERSION_MAJOR) + "." +
                         std::to_string(TORCH_VERSION_MINOR) + "." +
                         std::to_string(TORCH_VERSION_PATCH);
    d["cpu_kernels"] = true;
    d["cpu_avx2_compiled"] = fastgan::cpu::avx2_kernels_compiled();
    d["cpu_avx2_active"] = fastgan::cpu::avx2_kernels_active();
    return d;
  });
  m.def(
      "_set_cpu_kernels",
      [](const std::string& which) {
        if (which == "auto") {
          fastgan::cpu::set_kernel_choice(0);
        } else if (which == "default") {
          fastgan::cpu::set_kernel_choice(1);
        } else if (which == "avx2") {
          fastgan::cpu::set_kernel_choice(2);
        } else {
          throw py::value_error("which must be 'auto', 'default' or 'avx2', got '" + which +
                                "'");
        }
      },
      py::arg("which"));
}
