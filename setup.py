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


def _want_cuda(cuda_home: str | None) -> tuple[bool, str]:
    """Whether to build the CUDA kernels, and why (or why not), for the one status line."""
    flag = os.environ.get("FASTGAN_CUDA", "").strip()
    if flag == "0":
        return False, "FASTGAN_CUDA=0"
    if flag == "1":
        if cuda_home is None:
            sys.exit(f"FASTGAN_CUDA=1 but {_no_nvcc_reason()}; set CUDA_HOME to a CUDA toolkit")
        return True, "FASTGAN_CUDA=1"
    if flag:
        sys.exit(f"FASTGAN_CUDA must be 0 or 1, got {flag!r}")
    if cuda_home is None:
        return False, _no_nvcc_reason()
    return True, f"nvcc found under CUDA_HOME={cuda_home}"


def _no_nvcc_reason() -> str:
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if env:
        return f"no nvcc under CUDA_HOME={env}"
    return "no nvcc found (not under /usr/local/cuda, not on PATH)"


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


def _prefer_environment_ninja() -> None:
    """Puts the ninja of this Python's environment (the `ninja` build requirement) first on
    PATH. torch runs whichever `ninja` PATH finds, and ninja versions disagree on the log
    that records the compile commands (1.11 writes v5, 1.12+ discards it and writes v7):
    `make build` (venv on PATH) and a plain `.venv/bin/pip install -e .` would each
    recompile every file after the other."""
    bindir = Path(sys.executable).parent
    if Path(bindir, "ninja").exists():
        os.environ["PATH"] = os.pathsep.join([str(bindir), os.environ.get("PATH", "")])


_prefer_environment_ninja()
cuda_home = _cuda_home()
with_cuda, cuda_reason = _want_cuda(cuda_home)
if with_cuda:
    # torch.utils.cpp_extension reads these when it is imported.
    os.environ["CUDA_HOME"] = cuda_home
    if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        import torch

        if not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS

from torch.utils import cpp_extension  # noqa: E402  (after CUDA_HOME is set)

import torch  # noqa: E402

# One list of C++ sources, globbed by folder (CMakeLists.txt globs the same folders).
sources = ["csrc/fastgan.cpp", "csrc/python_module.cpp"] + sorted(
    str(p.relative_to(ROOT)) for d in ("autograd", "cpu") for p in (ROOT / "csrc" / d).glob("*.cpp")
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


def _write_build_config() -> None:
    """csrc/build_config.h: facts about this build for csrc/python_module.cpp alone (the
    only file that includes it), rewritten only when they change, so the other files'
    compile commands never change and ninja keeps their objects."""
    def c_str(v: str) -> str:
        return '"' + v.replace("\\", "/").replace('"', "'") + '"'

    text = (
        "// Generated by setup.py: do not edit, not tracked.\n#pragma once\n"
        f"#define FG_TORCH_VERSION {c_str(torch.__version__)}\n"
        f"#define FG_CUDA_REASON {c_str(cuda_reason)}\n"
    )
    path = ROOT / "csrc" / "build_config.h"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _status_line() -> str:
    import torch

    if with_cuda:
        archs = os.environ.get("TORCH_CUDA_ARCH_LIST") or "those of the visible GPU"
        cuda = f"CUDA kernels: built for {archs} ({cuda_reason})"
    else:
        cuda = f"CUDA kernels: not built ({cuda_reason})"
        if torch.cuda.is_available():
            cuda += "; WARNING: this machine has a CUDA GPU, which will run the slow references"
    return f"fastgan: CPU kernels: built (torch {torch.__version__}); {cuda}"


class _BuildExt(cpp_extension.BuildExtension):
    """torch's BuildExtension with a build folder that outlives the command: pip's editable
    and wheel builds otherwise compile in a fresh temporary folder, so ninja can never skip
    an unchanged file. The folder is keyed by Python, torch and the CUDA choice, so
    switching any of them never mixes object files."""

    def finalize_options(self):
        super().finalize_options()
        import torch

        tag = f"py{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__}"
        tag += "-cuda" if with_cuda else "-cpu"
        self.build_temp = str(ROOT / "build" / f"temp-{tag}")

    def run(self):
        _write_build_config()
        print(_status_line(), flush=True)
        super().run()


setup(
    ext_modules=[ext],
    cmdclass={"build_ext": _BuildExt.with_options(use_ninja=True)},
)
