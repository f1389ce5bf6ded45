# Two entry points (see README): `make demo` runs pdc end to end on an example model;
# `make test` installs what the tests need and runs the whole suite.
PYTHON ?= python3
PIP = $(PYTHON) -m pip install --quiet --disable-pip-version-check

.PHONY: install demo test-deps zoo test
install:
	$(PIP) -e .

demo: install
	$(PYTHON) examples/tiny_cnn.py examples/tiny_cnn.onnx
	pdc inspect examples/tiny_cnn.onnx
	pdc opt examples/tiny_cnn.onnx --emit ir -o examples/tiny_cnn.pdir
	pdc compile examples/tiny_cnn.onnx -o examples/tiny_cnn_x86 --shape N=1
	pdc run examples/tiny_cnn_x86
	pdc check examples/tiny_cnn.onnx --target x86 --shape N=2

test-deps: install
	$(PIP) -e '.[test]' paddlepaddle paddle2onnx scikit-learn
	# paddle2onnx's metadata caps onnx at 1.17; it works with the onnx pdc's conformance counts are measured on
	$(PIP) 'onnx==1.23.2'

test: test-deps
	$(PYTHON) tools/make_zoo.py
	$(PYTHON) -m pytest -n 2 -q
