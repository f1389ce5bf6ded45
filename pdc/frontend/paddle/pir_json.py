"""Parses a Paddle 3 PIR program serialized as JSON (inference.json) into a `Program`.

Layout (schema version 4, Paddle 3.x): {"base_code": {"magic": "pir", "version": 4, ...},
"program": {"regions": [{"blocks": [{"ops": [...]}]}]}}. Each op is {"#": "<dialect>.<name>",
"I": operands, "O": results with types "TT", "A": named attributes}; `p` ops are parameters,
`1.data` ops the inputs and `1.fetch` ops the outputs.
"""
from __future__ import annotations

import json
import math
import warnings
from typing import Optional

import numpy as np

from ...ir import dtypes
from ...ir.errors import PdcError, UnsupportedError
from ...ir.types import TensorType
from .pdiparams import ParamSpec
from .program import Block, Op, Program, declared_type, parse_dtype

SCHEMA_VERSION = 4  # what Paddle 3.x writes
CONTROL_FLOW = ("if", "while")  # pd_op ops with regions that pdc lowers (lower.py)
DIALECTS = {"0": "builtin", "1": "pd_op", "2": "cf", "3": "custom_op", "4": "pd_dist"}

ELEMENT_TYPES = {
    "t_f32": dtypes.float32, "t_f64": dtypes.float64, "t_f16": dtypes.float16, "t_bf16": dtypes.bfloat16,
    "t_i8": dtypes.int8, "t_ui8": dtypes.uint8, "t_i16": dtypes.int16, "t_i32": dtypes.int32,
    "t_i64": dtypes.int64, "t_bool": dtypes.bool_,
}

_SPECIAL_FLOATS = {"NaN": math.nan, "INF": math.inf, "-INF": -math.inf}


class _Bad(Exception):
    """A malformed piece of JSON; turned into a PdcError naming the op."""


def element_type(t: dict, where: str):
    tid = t.get("#", "") if isinstance(t, dict) else ""
    short = tid.split(".", 1)[-1] if isinstance(tid, str) else repr(tid)
    if short not in ELEMENT_TYPES:
        raise UnsupportedError(f"{where}: element type '{short}' is not supported")
    return ELEMENT_TYPES[short]


def parse_type(tt, where: str):
    """A TensorType for a dense tensor type, a list for a vector type, None for anything else."""
    if not isinstance(tt, dict):
        return None
    tid = tt.get("#")
    if tid == "0.t_dtensor":
        d = tt.get("D")
        if not isinstance(d, list) or len(d) < 2 or not isinstance(d[1], list):
            raise _Bad("malformed tensor type")
        return declared_type(element_type(d[0], where), [int(x) for x in d[1]])
    if tid == "0.t_vec":
        return [parse_type(t, where) for t in tt.get("D", [])]
    return None


def attr_value(at):
    """The Python value of an attribute object {"#": id, "D": data}."""
    if not isinstance(at, dict):
        raise _Bad("malformed attribute")
    tid = at.get("#", "")
    if "VD" in at:
        return _SPECIAL_FLOATS.get(at["VD"], math.nan)
    d = at.get("D")
    if tid == "0.a_array":
        return [attr_value(x) for x in d]
    if tid == "0.a_f32":
        return float(np.float32(d))  # written as the double of a float32
    if tid == "0.a_f64":
        return float(d)
    if tid == "1.a_scalar" and isinstance(d, list) and len(d) == 2:
        return d[1]
    if tid == "0.a_type":
        return parse_type(d, "attribute")
    return d  # bool, ints, strings, int arrays, places, layouts


def load_pir_json(path: str) -> Program:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PdcError(f"{path}: not a Paddle PIR model (invalid JSON: {e})") from None
    except ValueError:  # Python refuses to convert integers of thousands of digits
        raise PdcError(f"{path}: not a Paddle PIR model (a number too long to read)") from None
    except RecursionError:
        raise PdcError(f"{path}: not a Paddle PIR model (JSON nested too deeply)") from None
    base = doc.get("base_code") if isinstance(doc, dict) else None
    if not isinstance(base, dict) or base.get("magic") != "pir":
        raise PdcError(f"{path}: not a Paddle PIR model (no base_code.magic \"pir\")")
    version = base.get("version")
    if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
        raise UnsupportedError(f"{path}: PIR schema version {version!r} is not supported "
                               f"(pdc reads version {SCHEMA_VERSION}, written by Paddle 3.x)")
    if version != SCHEMA_VERSION:
        warnings.warn(f"{path}: PIR schema version {version} is older than {SCHEMA_VERSION}; "
                      f"renamed ops or attributes may be reported as unsupported")
    try:
        regions = doc["program"]["regions"]
        ops = regions[0]["blocks"][0]["ops"]
        if not isinstance(ops, list):
            raise TypeError
    except (KeyError, IndexError, TypeError):
        raise PdcError(f"{path}: malformed PIR program (no program.regions[0].blocks[0].ops)") from None
    return _Parser(path).run(ops)


def _arg_id(a) -> int:
    """The id of a block argument ("#", negative); operands refer to it as {"%": id}."""
    key = a.get("#") if isinstance(a, dict) else None
    if not isinstance(key, int) or isinstance(key, bool):
        raise _Bad(f"a block argument id {key!r} that is not an integer")
    return key


def _value_id(x) -> int:
    """The integer id ("%") of a result or operand: values are looked up by it."""
    key = x.get("%") if isinstance(x, dict) else None
    if not isinstance(key, int) or isinstance(key, bool):
        raise _Bad(f"a value id {key!r} that is not an integer")
    return key


class _Parser:
    def __init__(self, path: str):
        self.path = path
        self.program = Program(path, "pir")
        self.fetches: list[tuple[int, object]] = []

    def run(self, ops: list) -> Program:
        self.program.ops = self.ops(ops, f"{self.path}: op #")
        self.fetches.sort(key=lambda c: c[0])
        self.program.outputs = [k for _, k in self.fetches]
        if not self.program.outputs:
            raise PdcError(f"{self.path}: the program has no fetch ops (no outputs)")
        return self.program

    def ops(self, ops: list, prefix: str) -> list[Op]:
        """The ops of a block (the program's, or a control-flow body's: `prefix` names it)."""
        out = []
        for i, op in enumerate(ops):
            where = f"{prefix}{i}"
            if not isinstance(op, dict):
                raise PdcError(f"{where}: malformed op")
            try:
                parsed = self.op(op, i, where)
            except _Bad as e:
                raise PdcError(f"{where} ({op.get('#')}): {e}") from None
            except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as e:
                raise PdcError(f"{where} ({op.get('#')}): malformed op ({type(e).__name__}: {e})") from None
            if parsed is not None:
                out.append(parsed)
        return out

    def block(self, region: dict, where: str) -> Block:
        """A region's one block: its arguments, its ops and the operands of the yield closing it."""
        blocks = region.get("blocks") if isinstance(region, dict) else None
        if not isinstance(blocks, list) or len(blocks) != 1 or not isinstance(blocks[0], dict):
            raise _Bad("a region without exactly one block")
        b = blocks[0]
        args = [(_arg_id(a), parse_type(a.get("TT"), where)) for a in b.get("args", [])]
        ops = b.get("ops")
        if not isinstance(ops, list) or not ops or not isinstance(ops[-1], dict) or ops[-1].get("#") != "2.yield":
            raise _Bad("a region whose block does not end in a yield")
        yields = [self.operand(x) for x in ops[-1].get("I", [])]
        return Block(args, self.ops(ops[:-1], f"{where} body op #"), yields)

    def op(self, op: dict, i: int, where: str) -> Optional[Op]:
        tag = op.get("#")
        if tag == "p":
            return self.parameter(op, where)
        if not isinstance(tag, str) or "." not in tag:
            raise _Bad("op without a '<dialect>.<name>' id")
        dialect, name = tag.split(".", 1)
        attrs = {a["N"]: attr_value(a["AT"]) for a in op.get("A", []) if isinstance(a, dict)}
        attrs.pop("struct_name", None)
        results = op.get("O", [])
        if isinstance(results, dict):
            results = [results]
        keys = [_value_id(r) for r in results]
        types = [parse_type(r.get("TT"), where) for r in results]
        operands = [self.operand(x) for x in op.get("I", [])]
        if dialect == "1" and name == "data":
            dt = parse_dtype(attrs.get("dtype"), where)
            shape = attrs.get("shape")
            if dt is None or not isinstance(shape, list):
                raise _Bad("data op without dtype or shape")
            self.program.inputs.append((str(attrs.get("name", f"input{len(self.program.inputs)}")), keys[0],
                                        TensorType(dt, tuple(int(d) for d in shape))))
            return None
        if dialect == "1" and name == "fetch":
            self.fetches.append((int(attrs.get("col", len(self.fetches))), operands[0]))
            return
        label = name if dialect == "1" else f"{DIALECTS.get(dialect, dialect)}.{name}"
        regions = []
        if "regions" in op:
            if not (dialect == "1" and name in CONTROL_FLOW):
                label = f"{label} (control flow)"
            elif not isinstance(op["regions"], list):
                raise _Bad("malformed regions")
            else:
                regions = [self.block(r, f"{where} '{label}'") for r in op["regions"]]
        return Op(label, operands, keys, attrs, types, f"{where} '{label}'", f"{name}_{i}", regions=regions)

    def operand(self, x):
        if not isinstance(x, dict):
            raise _Bad("malformed operand")
        if "%" in x:
            return None if x["%"] == 0 else _value_id(x)
        if "#" in x:
            return f"arg{x['#']}"  # a block argument (only inside control-flow regions)
        raise _Bad("malformed operand")

    def parameter(self, op: dict, where: str) -> None:
        a, oa, out = op.get("A"), op.get("OA"), op.get("O")
        if not (isinstance(a, list) and len(a) >= 4 and isinstance(out, dict)):
            raise _Bad("malformed parameter op")
        name = str(a[3])
        _value_id(out)
        t = parse_type(out.get("TT"), f"{where} (parameter '{name}')")
        persistable = bool(oa[0]) if isinstance(oa, list) and oa else True
        if not persistable:
            self.program.unavailable[out["%"]] = f"non-persistable parameter '{name}'"
            return
        if not isinstance(t, TensorType) or not t.is_static:
            raise PdcError(f"{where}: parameter '{name}' has type {t}, expected a static tensor")
        self.program.params.append((ParamSpec(name, t.dtype, t.shape), out["%"]))
