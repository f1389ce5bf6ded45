# Two entry points (see README): `make demo` runs pdc end to end on an example model;
# `make test` installs what the tests need and runs the whole suite.
PYTHON ?= python3
PIP = $(PYTHON) -m pip install --quiet --disable-pip-version-check

.PHONY: install demo-deps demo toolchains test-deps zoo test fuzz-kernels fuzz
install:
	$(PIP) -e .

# the demo's last step, pdc check, compares with ONNX Runtime: the `check` extra installs it
demo-deps:
	$(PIP) -e '.[check]'

demo: demo-deps
	$(PYTHON) examples/tiny_cnn.py examples/tiny_cnn.onnx
	pdc inspect examples/tiny_cnn.onnx
	pdc opt examples/tiny_cnn.onnx --emit ir -o examples/tiny_cnn.pdir
	pdc compile examples/tiny_cnn.onnx -o examples/tiny_cnn_x86 --shape N=1
	pdc run examples/tiny_cnn_x86
	pdc check examples/tiny_cnn.onnx --target x86 --shape N=2

# Cross compilers and emulators for the ARM targets, and clang to check the generated C warns on neither
# compiler (Debian packages); those tests fail in CI without them. The CUDA toolkit (nvcc) is not a
# Debian package: the cuda tests expect it installed (CI's machines have it).
toolchains:
	@if command -v apt-get >/dev/null 2>&1; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends \
	    gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
	    qemu-user gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm make cmake g++ clang-15 lld-15 chromium \
	    pocl-opencl-icd ocl-icd-opencl-dev; \
	else echo "apt-get not found: install the ARM cross toolchains and qemu yourself (see README)"; fi
	@command -v nvcc >/dev/null 2>&1 || [ -x "$${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] || \
	  echo "nvcc not found: the cuda tests need NVIDIA's CUDA toolkit (nvcc on PATH, or CUDA_HOME)"

test-deps: install toolchains
	$(PIP) -e '.[test,hexagon]' paddlepaddle scikit-learn onnxoptimizer polygraphy
	# the FPGA C simulation's ap_types headers: hls4ml ships them (its dependencies are not needed)
	$(PIP) --no-deps 'hls4ml==1.3.0'
	# paddle2onnx 2.1.0's metadata caps onnx at 1.17 (pip would fall back to 2.0.1, which exports differently);
	# it works with the onnx pdc's conformance counts are measured on, so install it without its pins
	$(PIP) --no-deps 'paddle2onnx==2.1.0'
	$(PIP) 'onnx==1.23.2'

test: test-deps
	$(PYTHON) tools/make_zoo.py
	$(PYTHON) -m pytest -n 2 -q
	$(PYTHON) -m pytest -q -rP -m timing

# Long fuzzing of the compiled kernels against their oracles (tests/kernels): fresh seeds, 3x the CI
# tier's examples per round, FUZZ_MINUTES long; prints the layers drawn per op and target and any failure.
FUZZ_MINUTES ?= 60
fuzz-kernels: test-deps
	$(PYTHON) tools/fuzz_kernels.py --minutes $(FUZZ_MINUTES)

# Long mutation fuzzing of the ONNX importer and the compiler (tests/test_fuzz_onnx.py is CI's minute):
# FUZZ_MODELS fresh mutated models through inspect, opt -O2 and compile, each accepted one built and run
# beside ONNX Runtime, in worker processes (crashes and hangs are counted); the outcome counts at the end.
FUZZ_MODELS ?= 1000
FUZZ_JOBS ?= 1
FUZZ_OUT ?= /tmp/pdc-fuzz
fuzz: test-deps
	$(PYTHON) tools/fuzz_onnx.py --models $(FUZZ_MODELS) --jobs $(FUZZ_JOBS) --out $(FUZZ_OUT)
