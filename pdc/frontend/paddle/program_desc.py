"""Parses a legacy Paddle ProgramDesc protobuf (inference.pdmodel) into a `Program`.

The framework.proto subset pdc needs is written out below as wire-format schemas (field numbers
from Paddle 3.3.1's framework.proto). Block 0 holds the variables and ops; `feed` ops name the
inputs, `fetch` ops the outputs (both ordered by their `col`), persistable dense tensors are the
parameters. Each other op is rewritten into PIR terms by `legacy_ops`.
"""
from __future__ import annotations

from ...ir.errors import PdcError
from ...ir.types import TensorType
from .legacy_ops import ADAPTERS, LegacyOp
from .pdiparams import TENSOR_DESC, ParamSpec, vartype_dtype
from .program import Op, Program, declared_type
from .protowire import WireError, decode

DENSE_TENSOR, FEED_MINIBATCH, FETCH_LIST = 7, 9, 10

DENSE_TENSOR_DESC = {1: ("tensor", TENSOR_DESC, False), 2: ("lod_level", "int", False)}
VAR_TYPE = {1: ("type", "int", False), 3: ("dense_tensor", DENSE_TENSOR_DESC, False)}
VAR_DESC = {1: ("name", "string", False), 2: ("type", VAR_TYPE, False), 3: ("persistable", "bool", False)}
SCALAR = {1: ("type", "int", False), 2: ("b", "bool", False), 3: ("i", "int", False), 4: ("r", "double", False)}
OP_ATTR = {
    1: ("name", "string", False), 2: ("type", "int", False), 3: ("i", "int", False), 4: ("f", "float", False),
    5: ("s", "string", False), 6: ("ints", "int", True), 7: ("floats", "float", True),
    8: ("strings", "string", True), 10: ("b", "bool", False), 11: ("bools", "bool", True),
    12: ("block_idx", "int", False), 13: ("l", "int", False), 14: ("blocks_idx", "int", True),
    15: ("longs", "int", True), 16: ("float64s", "double", True), 17: ("var_name", "string", False),
    18: ("vars_name", "string", True), 19: ("float64", "double", False), 20: ("scalar", SCALAR, False),
    21: ("scalars", SCALAR, True),
}
OP_VAR = {1: ("parameter", "string", False), 2: ("arguments", "string", True)}
OP_DESC = {3: ("type", "string", False), 1: ("inputs", OP_VAR, True), 2: ("outputs", OP_VAR, True),
           4: ("attrs", OP_ATTR, True)}
BLOCK_DESC = {1: ("idx", "int", False), 2: ("parent_idx", "int", False), 3: ("vars", VAR_DESC, True),
              4: ("ops", OP_DESC, True)}
PROGRAM_DESC = {1: ("blocks", BLOCK_DESC, True), 4: ("version", {1: ("version", "int", False)}, False)}

# AttrType -> the field holding the value (with its proto2 default)
ATTR_FIELDS = {0: ("i", 0), 1: ("f", 0.0), 2: ("s", ""), 3: ("ints", []), 4: ("floats", []), 5: ("strings", []),
               6: ("b", False), 7: ("bools", []), 8: ("block_idx", 0), 9: ("l", 0), 10: ("blocks_idx", []),
               11: ("longs", []), 12: ("float64s", []), 13: ("var_name", ""), 14: ("vars_name", []),
               15: ("float64", 0.0), 16: ("scalar", None), 17: ("scalars", [])}
IGNORED_ATTRS = {"op_role", "op_role_var", "op_namescope", "op_device", "op_callstack", "with_quant_attr",
                 "use_mkldnn", "use_cudnn", "use_onednn", "mkldnn_data_type", "onednn_data_type", "is_test_pass"}


def _scalar_value(s: dict):
    kind = s.get("type", 0)
    if kind == 1:
        return s.get("b", False)
    if kind == 2:
        return s.get("i", 0)
    if kind == 3:
        return s.get("r", 0.0)
    raise PdcError("complex scalars are not supported")


def attr_value(a: dict):
    kind = a.get("type", 0)
    if kind not in ATTR_FIELDS:
        raise PdcError(f"attribute '{a.get('name')}' has unknown type {kind}")
    name, default = ATTR_FIELDS[kind]
    value = a.get(name, default)
    if kind == 16:
        return None if value is None else _scalar_value(value)
    if kind == 17:
        return [_scalar_value(s) for s in value]
    if kind in (8, 10):
        return ("block", value)  # sub-blocks: control flow
    return value


def load_program_desc(path: str) -> Program:
    with open(path, "rb") as f:
        data = f.read()
    try:
        desc = decode(data, PROGRAM_DESC)
    except WireError as e:
        raise PdcError(f"{path}: not a Paddle ProgramDesc (protobuf decode failed: {e})") from None
    blocks = desc.get("blocks", [])
    if not blocks or not blocks[0].get("ops"):
        raise PdcError(f"{path}: not a Paddle ProgramDesc (no ops in block 0)")
    return _Parser(path, blocks[0]).run()


class _Parser:
    def __init__(self, path: str, block: dict):
        self.path = path
        self.block = block
        self.program = Program(path, "legacy")
        self.var_types: dict[str, TensorType] = {}

    def run(self) -> Program:
        for v in self.block.get("vars", []):
            self.variable(v)
        feeds, fetches = [], []
        counter: dict[str, int] = {}
        for i, od in enumerate(self.block["ops"]):
            where = f"{self.path}: op #{i} '{od.get('type', '?')}'"
            op = LegacyOp(od, where, attr_value, IGNORED_ATTRS, self)
            if op.type == "feed":
                feeds.append((int(op.attr("col", 0)), op.out("Out")))
                continue
            if op.type == "fetch":
                fetches.append((int(op.attr("col", 0)), op.inp("X")))
                continue
            n = counter.get(op.type, 0)
            counter[op.type] = n + 1
            name = f"{op.type}_{n}"
            adapter = ADAPTERS.get(op.type)
            if adapter is None or any(isinstance(v, tuple) for v in op.attrs.values()):
                label = op.type if adapter is not None or not op.has_block() else f"{op.type} (control flow)"
                self.program.ops.append(Op(label, [], [], {}, [], where, name, unsupported=True))
                continue
            try:
                new = adapter(op)
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise PdcError(f"{where}: malformed op ({type(e).__name__}: {e})") from None
            for k, pop in enumerate(new if isinstance(new, list) else [new]):
                pop.where, pop.name = where, name if k == 0 else f"{name}_{k}"
                self.program.ops.append(pop)
        for col, var in sorted(feeds, key=lambda c: c[0]):
            t = self.var_types.get(var)
            if t is None:
                raise PdcError(f"{self.path}: feed variable '{var}' has no tensor type")
            self.program.inputs.append((var, var, TensorType(t.dtype, tuple(-1 if d == "?" else d for d in t.shape))))
        self.program.outputs = [var for _, var in sorted(fetches, key=lambda c: c[0])]
        if not self.program.outputs:
            raise PdcError(f"{self.path}: the program has no fetch ops (no outputs)")
        return self.program

    def variable(self, v: dict) -> None:
        name = v.get("name", "")
        vt = v.get("type", {})
        if vt.get("type") != DENSE_TENSOR:
            return
        td = vt.get("dense_tensor", {}).get("tensor", {})
        where = f"{self.path}: variable '{name}'"
        if "data_type" not in td:
            raise PdcError(f"{where}: no element type")
        try:
            dt = vartype_dtype(td["data_type"], where)
        except PdcError:
            if v.get("persistable"):
                raise
            return  # an unsupported type on a temporary only matters if an op uses it
        t = declared_type(dt, td.get("dims", []))
        self.var_types[name] = t
        if v.get("persistable"):
            if not t.is_static:
                raise PdcError(f"{where}: parameter with dynamic shape {t}")
            self.program.params.append((ParamSpec(name, dt, t.shape), name))

    def type_of(self, name):
        return self.var_types.get(name)
