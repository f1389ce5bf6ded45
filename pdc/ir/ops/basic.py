"""Ops that move data unchanged."""
from ..registry import REQUIRED, Attr, register_op
from .common import same_as_input

register_op("identity", ["input"], ["output"], onnx="Identity",
            infer=same_as_input(0), reference=lambda x, attrs: x[0].copy(),
            doc="Copies its input.")

register_op("copy", ["input"], ["output"], attrs={"to": Attr("string", REQUIRED)},
            infer=same_as_input(0), reference=lambda x, attrs: x[0].copy(),
            doc="Copies its input into memory space `to` (\"host\", \"device\"): inserted by placement "
                "(pdc/codegen/placement.py) where a value crosses between a target's memory spaces.")
