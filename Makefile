# make demo  -- the main job on a fresh machine (creates .venv, builds, runs the demo)
# make test  -- builds and runs the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc)
PYTEST_ARGS ?=

.PHONY: venv build test demo bench gpu-check gpu-carry clean

venv: $(VENV)/.deps-stamp

$(VENV)/.deps-stamp: requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -r requirements-dev.txt
	touch $@

# Editable install: Python edits are live; C++/CUDA edits need `make build` again (incremental,
# build tree in build/). flock keeps concurrent builds from sharing the build tree.
build: venv
	flock build.lock $(PIP) install -q --no-build-isolation --no-deps -e .
	$(PY) -c "import gansr_ext, json; print(json.dumps(gansr_ext.build_info()))"

test: build
	$(PY) -m pytest -q -p no:cacheprovider --timeout=900 $(PYTEST_ARGS) tests

demo: build
	$(PY) -m gansr_ext.cli demo

bench: build
	$(PY) python/bench_ops.py

gpu-check:
	bash python/gpu_check.sh

# Wheels the GPU machine lacks (it has torch, numpy, pytest, scikit-image, no network): carry them
# with the device tool's `carry: [".carry"]` (64 MiB limit: OpenCV, needed only for 16-bit image IO,
# stays behind); gpu_check.sh installs them.
gpu-carry: venv
	$(PIP) download -q --no-deps -d .carry/wheels lpips pytorch-fid nvidia-cutlass safetensors

clean:
	rm -rf build *.egg-info
