# fastgan: `make run` (set up, build, run the main job) and `make test` (set up, build,
# run the C++ and Python tests) work on a fresh clone; every target installs what it needs.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-installed
export PATH := $(abspath $(VENV))/bin:$(PATH)

# The torch `make test` builds and tests against (the newest supported), and the oldest one,
# which `make test-compat` builds and tests against in its own venv.
TORCH := 2.14.1
COMPAT_TORCH := 2.11.0
COMPAT_VENV := .venv-compat
CPY := $(COMPAT_VENV)/bin/python
RUNTIME_DEPS := numpy tensorboard tqdm pillow matplotlib pyyaml
TEST_DEPS := pytest pytest-benchmark expecttest ninja scipy
# One pip call with torch, so that the resolver picks a setuptools torch accepts (torch 2.11
# wants setuptools<82; pyproject.toml's SPDX license string needs >=77.0.3).
BUILD_DEPS := "setuptools>=77.0.3" wheel ninja build

# Debian's Fashion-MNIST package, which the training presets and some tests read.
define install-dataset
	test -d /usr/share/datasets/fashion-mnist || ! command -v apt-get >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } || \
	  echo "warning: could not install dataset-fashion-mnist (the training presets need it)"
endef

# Runs tests/ against the fastgan installed in the venv of python $(1), from a fresh folder
# outside the source tree, so that `import fastgan` finds the installed package, not
# ./fastgan; pyproject.toml (the pytest settings) and README.md go along, tests/test_cli.py
# reads both. $(2): more pytest arguments.
define test-installed
	set -e; d=$$(mktemp -d "$${TMPDIR:-/tmp}/fastgan-tests.XXXXXX"); trap 'rm -rf "$$d"' EXIT; \
	cp -r tests pyproject.toml README.md "$$d"/; cd "$$d"; \
	$(abspath $(1)) -c 'import fastgan, fastgan._backend as b; print("testing", fastgan.__file__); print(b.summary())'; \
	FASTGAN_BACKEND=ext $(abspath $(1)) -m pytest tests -q -p no:cacheprovider --durations=10 $(2)
endef

.PHONY: setup build cpptest pytest test bench run gpu-check clean wheel wheel-test sdist-test \
	test-compat compat-setup FORCE

$(STAMP): pyproject.toml Makefile
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q torch==$(TORCH) $(BUILD_DEPS) $(TEST_DEPS) $(RUNTIME_DEPS)
	$(install-dataset)
	touch $(STAMP)

setup: $(STAMP)

# Ahead-of-time build of fastgan._C (CPU kernels; CUDA kernels when nvcc is found), as an
# editable install (the `fastgan` command). It reruns only when a C++ source or header,
# setup.py, pyproject.toml, the venv, the build settings below or the compiled module itself
# changed (a missing module forces it); ninja then recompiles only the changed files, into
# build/temp-<python>-<torch>-<cpu|cuda>.
CSRC := $(shell find csrc -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) \
	! -name build_config.h)
EXT_SO := $(wildcard fastgan/_C.*.so)
BUILD_STAMP := build/.make-build
BUILD_ENV := build/.make-build-env
BUILD_SETTINGS := FASTGAN_CUDA=$(FASTGAN_CUDA) TORCH_CUDA_ARCH_LIST=$(TORCH_CUDA_ARCH_LIST) \
	CUDA_HOME=$(CUDA_HOME) FASTGAN_PTXAS_VERBOSE=$(FASTGAN_PTXAS_VERBOSE)

# Rewritten only when the settings change, so that its date says when they last did.
$(BUILD_ENV): FORCE
	@mkdir -p build
	@echo '$(BUILD_SETTINGS)' | cmp -s - $@ || echo '$(BUILD_SETTINGS)' > $@

$(BUILD_STAMP): $(STAMP) $(CSRC) setup.py pyproject.toml $(BUILD_ENV) $(if $(EXT_SO),$(EXT_SO),FORCE)
	MAX_JOBS=$${MAX_JOBS:-2} $(VPY) -m pip install -q --no-build-isolation -e .
	touch $@

build: $(BUILD_STAMP)
	@$(VPY) -c "import fastgan._backend as b; print(b.summary())"

# The same C++ sources built with CMake against libtorch, and the C++ unit tests.
cpptest: setup
	cmake -S . -B build-cmake -G Ninja -DPython3_EXECUTABLE=$(abspath $(VPY))
	cmake --build build-cmake
	ctest --test-dir build-cmake --output-on-failure

# FASTGAN_BACKEND=ext: a missing or broken build fails the tests instead of falling back.
# Then the CUDA test files once more with FASTGAN_TEST_CUDA_ON_CPU=1: the same test bodies
# on the CPU kernels (bf16 autocast through every op and module included), so that their
# own logic is checked on every run, not first on a GPU machine.
pytest: build
	FASTGAN_BACKEND=ext $(VPY) -m pytest tests -q --durations=10
	FASTGAN_BACKEND=ext FASTGAN_TEST_CUDA_ON_CPU=1 $(VPY) -m pytest $(wildcard tests/test_*_cuda.py) -q -p no:cacheprovider

test: cpptest pytest

# The op benchmark against stock PyTorch and torch.compile (pytest-benchmark).
bench: build
	$(VPY) -m pytest bench/test_bench_bias_act.py -q \
	  --benchmark-group-by=param:layout,param:mode --benchmark-columns=median,iqr,min,rounds \
	  --benchmark-sort=name

# The main job: train the default preset (DCGAN on Fashion-MNIST, about 6 minutes on 2 CPU cores).
run: build
	$(VPY) -m fastgan train --preset fmnist-dcgan --out runs/fmnist-dcgan

# Oldest supported torch: a CPU-only build (FASTGAN_CUDA=0) installed into its own venv
# (.venv-compat, torch $(COMPAT_TORCH)), and the test suite against that installed package.
$(COMPAT_VENV)/.deps-installed: pyproject.toml Makefile
	test -x $(CPY) || $(PY) -m venv $(COMPAT_VENV)
	$(CPY) -m pip install -q --upgrade pip
	$(CPY) -m pip install -q torch==$(COMPAT_TORCH) $(BUILD_DEPS) $(TEST_DEPS) $(RUNTIME_DEPS)
	$(install-dataset)
	touch $@

compat-setup: $(COMPAT_VENV)/.deps-installed

# Without the slow tests (the classifier training alone is minutes), so that CI, which runs
# this after `make test`, stays well inside its time; COMPAT_PYTEST_ARGS= runs them too.
COMPAT_PYTEST_ARGS ?= -m "not slow"

test-compat: compat-setup
	FASTGAN_CUDA=0 MAX_JOBS=$${MAX_JOBS:-2} $(CPY) -m pip install -q --no-build-isolation --no-deps .
	$(call test-installed,$(CPY),$(COMPAT_PYTEST_ARGS))

# A wheel (holding fastgan._C built against this venv's torch, with CUDA kernels when nvcc
# is found) and an sdist, both built from this tree (so the wheel reuses build/'s objects).
wheel: $(STAMP)
	rm -rf dist
	MAX_JOBS=$${MAX_JOBS:-2} $(VPY) -m build --no-isolation --sdist --wheel --outdir dist .
	$(VPY) -m zipfile -l dist/fastgan-*.whl | grep -E 'fastgan/_C\.'

# The wheel installed into a fresh venv, and the tests run against it from outside the tree
# (INSTALLED_PYTEST_ARGS: more pytest arguments, here and in sdist-test, e.g. -m "not slow").
WHEEL_VENV := build/venv-wheel
INSTALLED_PYTEST_ARGS ?=
wheel-test: wheel
	rm -rf $(WHEEL_VENV)
	$(PY) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install -q torch==$(TORCH) "$$(ls dist/fastgan-*.whl)[test]"
	$(call test-installed,$(WHEEL_VENV)/bin/python,$(INSTALLED_PYTEST_ARGS))

# The sdist built and installed in a fresh venv (a full compile, in pip's temporary folder),
# and the tests run against it. FASTGAN_CUDA=0 makes it a CPU-only build.
SDIST_VENV := build/venv-sdist
sdist-test: wheel
	rm -rf $(SDIST_VENV)
	$(PY) -m venv $(SDIST_VENV)
	$(SDIST_VENV)/bin/python -m pip install -q torch==$(TORCH) $(BUILD_DEPS)
	MAX_JOBS=$${MAX_JOBS:-2} $(SDIST_VENV)/bin/python -m pip install -q --no-build-isolation \
	  "$$(ls $(abspath dist)/fastgan-*.tar.gz)[test]"
	$(call test-installed,$(SDIST_VENV)/bin/python,$(INSTALLED_PYTEST_ARGS))

# On a GPU machine: build with CUDA, run every CUDA test, print the CUDA timing tables.
gpu-check:
	bash bench/gpu_check.sh

clean:
	rm -rf build build-cmake dist fastgan/_C*.so *.egg-info

# Metrics benchmark (issue 6): 2048-d Frechet distance vs scipy sqrtm; classifier-FID of 10k samples.
bench-metrics: build
	$(VPY) -m pytest bench/test_bench_metrics.py -q -s --benchmark-columns=median,iqr,min,rounds
