"""Ahead-of-time build of fastgan._C: CPU kernels always, CUDA kernels when nvcc is found.

Environment:
  FASTGAN_CUDA=0|1        force the CUDA kernels off / on (default: on when nvcc is found)
  TORCH_CUDA_ARCH_LIST    CUDA archs; default with no visible GPU: "8.0;9.0+PTX"
  CUDA_HOME               CUDA toolkit; default: the one that holds nvcc
  FASTGAN_PTXAS_VERBOSE=1 pass -Xptxas -v to nvcc (register and spill report)
  MAX_JOBS                parallel compile jobs (ninja)

Install with `pip install --no-build-isolation .` (or `-e .`) so the build sees the torch
that fastgan will run with.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
DEFAULT_ARCHS = "8.0;9.0+PTX"  # Ampere and Hopper, PTX for newer GPUs


def _cuda_home() -> str | None:
    """The CUDA toolkit to build with, or None. Torch's own detection follows `which nvcc`,
    which finds /usr/local/bin/nvcc on some machines and then guesses /usr/local."""
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if env:
        return env if Path(env, "bin", "nvcc").exists() else None
    candidates = ["/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(os.path.realpath(nvcc)).parent.parent))
    for c in candidates:
        if Path(c, "bin", "nvcc").exists() and Path(c, "include", "cuda_runtime.h").exists():
            return c
    return None


def _want_cuda(cuda_home: str | None) -> bool:
    flag = os.environ.get("FASTGAN_CUDA", "").strip()
    if flag == "0":
        return False
    if flag == "1":
        if cuda_home is None:
            sys.exit("FASTGAN_CUDA=1 but no CUDA toolkit (nvcc) was found; set CUDA_HOME")
        return True
    if flag:
        sys.exit(f"FASTGAN_CUDA must be 0 or 1, got {flag!r}")
    return cuda_home is not None


def _extra_cuda_includes(cuda_home: str) -> list[str]:
    """Header dirs of NVIDIA's pip packages (cuBLAS, cuSPARSE, ...) when the toolkit lacks
    them: ATen/cuda/CUDAContext.h includes cublas_v2.h and cusparse.h."""
    if Path(cuda_home, "include", "cublas_v2.h").exists() and Path(
        cuda_home, "include", "cusparse.h"
    ).exists():
        return []
    found = []
    for site in sys.path:
        for inc in sorted(glob.glob(os.path.join(site, "nvidia", "*", "include"))):
            if Path(inc, "cublas_v2.h").exists() or Path(inc, "cusparse.h").exists():
                found.append(inc)
    return list(dict.fromkeys(found))


cuda_home = _cuda_home()
with_cuda = _want_cuda(cuda_home)
if with_cuda:
    # torch.utils.cpp_extension reads these when it is imported.
    os.environ["CUDA_HOME"] = cuda_home
    if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        import torch

        if not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS

from torch.utils import cpp_extension  # noqa: E402  (after CUDA_HOME is set)

sources = ["csrc/fastgan.cpp", "csrc/python_module.cpp"] + sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "cpu").glob("*.cpp")
)
cxx_flags = ["-O3", "-fopenmp", "-Wall", "-Wno-unknown-pragmas"]
define_macros = []
include_dirs = [str(ROOT / "csrc")]
nvcc_flags = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]

if with_cuda:
    sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "cuda").glob("*.cu"))
    include_dirs += _extra_cuda_includes(cuda_home)
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "detected")
    define_macros += [("FG_WITH_CUDA", None), ("FG_CUDA_ARCHS", f'"{archs}"')]
    import torch

    define_macros.append(("FG_CUDA_VERSION", f'"{torch.version.cuda or ""}"'))
    if os.environ.get("FASTGAN_PTXAS_VERBOSE") == "1":
        nvcc_flags.append("-Xptxas=-v")
    ext = cpp_extension.CUDAExtension(
        "fastgan._C",
        sources,
        include_dirs=include_dirs,
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
        extra_link_args=["-fopenmp"],
    )
else:
    ext = cpp_extension.CppExtension(
        "fastgan._C",
        sources,
        include_dirs=include_dirs,
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=["-fopenmp"],
    )

setup(
    ext_modules=[ext],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
