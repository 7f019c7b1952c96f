# fastgan: `make run` (set up, build, run the main job) and `make test` (set up, build,
# run the C++ and Python tests) work on a fresh clone; every target installs what it needs.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-installed
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup build cpptest pytest test bench run gpu-check clean

$(STAMP): pyproject.toml Makefile
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel
	$(VPY) -m pip install -q torch==2.14.1 numpy pytest pytest-benchmark ninja expecttest
	$(VPY) -m pip install -q tensorboard tqdm pillow matplotlib pyyaml
	$(VPY) -m pip install -q scipy
	test -d /usr/share/datasets/fashion-mnist || ! command -v apt-get >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } || \
	  echo "warning: could not install dataset-fashion-mnist (the training presets need it)"
	touch $(STAMP)

setup: $(STAMP)

# Ahead-of-time build of fastgan._C (CPU kernels; CUDA kernels when nvcc is found).
build: setup
	MAX_JOBS=$${MAX_JOBS:-2} $(VPY) -m pip install -q --no-build-isolation -e .

# The same C++ sources built with CMake against libtorch, and the C++ unit tests.
cpptest: setup
	cmake -S . -B build-cmake -G Ninja -DPython3_EXECUTABLE=$(abspath $(VPY))
	cmake --build build-cmake
	ctest --test-dir build-cmake --output-on-failure

# FASTGAN_BACKEND=ext: a missing or broken build fails the tests instead of falling back.
pytest: build
	FASTGAN_BACKEND=ext $(VPY) -m pytest tests -q

test: cpptest pytest

# The op benchmark against stock PyTorch and torch.compile (pytest-benchmark).
bench: build
	$(VPY) -m pytest bench/test_bench_bias_act.py -q \
	  --benchmark-group-by=param:layout,param:mode --benchmark-columns=median,iqr,min,rounds \
	  --benchmark-sort=name

# The main job: train the default preset (DCGAN on Fashion-MNIST, about 6 minutes on 2 CPU cores).
run: build
	$(VPY) -m fastgan train --preset fmnist-dcgan --out runs/fmnist-dcgan

gpu-check:
	bash bench/gpu_check.sh

clean:
	rm -rf build build-cmake fastgan/_C*.so *.egg-info

# Metrics benchmark (issue 6): 2048-d Frechet distance vs scipy sqrtm; classifier-FID of 10k samples.
bench-metrics: build
	$(VPY) -m pytest bench/test_bench_metrics.py -q -s --benchmark-columns=median,iqr,min,rounds
