"""ONNX's node conformance tests through pdc.onnx_backend (collected by test_onnx_conformance.py)."""
