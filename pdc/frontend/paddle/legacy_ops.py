"""Rewrites legacy ProgramDesc ops into the PIR form `ops.py` lowers.

A legacy op names its operands by slot (`X`, `Filter`, `ShapeTensor`...) and keeps many values
that PIR passes as operands in attributes (`ksize`, `shape`, `axis`, `dropout_prob`). Each
adapter here picks the slots in PIR operand order, turns such attributes into `Const` operands
(unless the legacy op supplies a tensor for them), and renames attributes where PIR differs.
"""
from __future__ import annotations

import numpy as np

from .program import Const, Op

# VarType.Type element codes -> the dtype strings PIR attributes use
VARTYPE_NAMES = {0: "bool", 1: "int16", 2: "int32", 3: "int64", 4: "float16", 5: "float32", 6: "float64",
                 20: "uint8", 21: "int8", 22: "bfloat16"}


class LegacyOp:
    """One OpDesc: slots and attributes, plus the variable types of its program."""

    def __init__(self, desc: dict, where: str, attr_value, ignored: set, parser):
        self.type = desc.get("type", "")
        self.where = where
        self.parser = parser
        self.inputs = {v.get("parameter", ""): list(v.get("arguments", [])) for v in desc.get("inputs", [])}
        self.outputs = {v.get("parameter", ""): list(v.get("arguments", [])) for v in desc.get("outputs", [])}
        self.attrs = {a.get("name", ""): attr_value(a) for a in desc.get("attrs", []) if a.get("name") not in ignored}

    def has_block(self) -> bool:
        return any(isinstance(v, tuple) for v in self.attrs.values())

    def inp(self, slot: str):
        args = self.inputs.get(slot, [])
        return args[0] if args else None

    def inps(self, slot: str) -> list:
        return list(self.inputs.get(slot, []))

    def out(self, slot: str):
        args = self.outputs.get(slot, [])
        return args[0] if args else None

    def outs(self, slot: str) -> list:
        return list(self.outputs.get(slot, []))

    def attr(self, name: str, default=None):
        return self.attrs.get(name, default)

    def tensor_or_const(self, slot: str, attr: str, dtype=np.int64, list_slot: str = ""):
        """A tensor slot if the op fills it, else a list slot, else the attribute as a constant."""
        if self.inp(slot):
            return self.inp(slot)
        if list_slot and self.inps(list_slot):
            return self.inps(list_slot)
        value = self.attr(attr)
        return None if value is None else Const(np.asarray(value, dtype))

    def make(self, pir_type: str, operands: list, results: list, attrs: dict | None = None) -> Op:
        def typ(r):
            if isinstance(r, list):
                return [self.parser.type_of(x) for x in r]
            return None if r is None else self.parser.type_of(r)
        return Op(pir_type, operands, results, dict(attrs or {}), [typ(r) for r in results], self.where)


def dtype_name(code, default=None):
    if code is None or code < 0:
        return default
    return VARTYPE_NAMES.get(code, f"vartype{code}")


def unsupported(o: LegacyOp, label: str) -> Op:
    return Op(label, [], [], {}, [], o.where, unsupported=True)


ADAPTERS = {}


def adapter(*types):
    def wrap(fn):
        for t in types:
            ADAPTERS[t] = fn
        return fn
    return wrap


def renamed(attrs: dict, mapping: dict) -> dict:
    return {mapping.get(k, k): v for k, v in attrs.items()}


# ---- ops whose slots map one-to-one ---------------------------------------------------------
UNARY = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "exp": "exp", "log": "log", "sqrt": "sqrt",
         "abs": "abs", "floor": "floor", "ceil": "ceil", "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin",
         "acos": "acos", "atan": "atan", "sinh": "sinh", "cosh": "cosh", "asinh": "asinh", "acosh": "acosh",
         "atanh": "atanh", "erf": "erf", "reciprocal": "reciprocal", "sign": "sign", "softsign": "softsign",
         "mish": "mish", "silu": "silu", "swish": "swish", "square": "square", "rsqrt": "rsqrt", "log2": "log2",
         "log10": "log10", "log1p": "log1p", "expm1": "expm1", "relu6": "relu6", "hard_sigmoid": "hardsigmoid",
         "hard_swish": "legacy_hard_swish", "elu": "elu", "celu": "celu", "selu": "selu", "gelu": "gelu",
         "softplus": "softplus", "logsigmoid": "logsigmoid", "tanh_shrink": "tanh_shrink", "brelu": "hardtanh",
         "hardtanh": "hardtanh", "thresholded_relu": "thresholded_relu", "round": "round",
         "logical_not": "logical_not", "bitwise_not": "bitwise_not", "isnan_v2": "isnan", "isinf_v2": "isinf",
         "isfinite_v2": "isfinite", "softmax": "softmax", "log_softmax": "log_softmax", "assign": "assign",
         "transpose": "transpose", "transpose2": "transpose", "flatten_contiguous_range": "flatten",
         "flatten": "legacy_flatten", "flatten2": "legacy_flatten", "pixel_shuffle": "pixel_shuffle",
         "cumsum": "cumsum", "pad": "pad", "shape": "shape", "size": "numel", "p_norm": "p_norm", "mean": "mean_all",
         "leaky_relu": "leaky_relu"}
UNARY_RENAMES = {"leaky_relu": {"alpha": "negative_slope"}, "transpose": {"axis": "perm"},
                 "transpose2": {"axis": "perm"}}


@adapter(*UNARY)
def unary(o: LegacyOp):
    x = o.inp("X") or o.inp("Input")
    out = o.out("Out")
    return o.make(UNARY[o.type], [x], [out], renamed(o.attrs, UNARY_RENAMES.get(o.type, {})))


BINARY = {"elementwise_add": "add", "elementwise_sub": "subtract", "elementwise_mul": "multiply",
          "elementwise_div": "divide", "elementwise_max": "maximum", "elementwise_min": "minimum",
          "elementwise_pow": "elementwise_pow", "elementwise_mod": "remainder", "elementwise_floordiv": "floor_divide",
          "equal": "equal", "not_equal": "not_equal", "less_than": "less_than", "less_equal": "less_equal",
          "greater_than": "greater_than", "greater_equal": "greater_equal", "logical_and": "logical_and",
          "logical_or": "logical_or", "logical_xor": "logical_xor", "bitwise_and": "bitwise_and",
          "bitwise_or": "bitwise_or", "bitwise_xor": "bitwise_xor", "bmm": "bmm"}


@adapter(*BINARY)
def binary(o: LegacyOp):
    return o.make(BINARY[o.type], [o.inp("X"), o.inp("Y")], [o.out("Out")], {"axis": o.attr("axis", -1)})


@adapter("matmul_v2")
def matmul_v2(o: LegacyOp):
    return o.make("matmul", [o.inp("X"), o.inp("Y")], [o.out("Out")],
                  {"transpose_x": o.attr("trans_x", False), "transpose_y": o.attr("trans_y", False)})


@adapter("matmul")
def matmul_v1(o: LegacyOp):
    attrs = {"transpose_x": o.attr("transpose_X", False), "transpose_y": o.attr("transpose_Y", False)}
    alpha = float(o.attr("alpha", 1.0))
    if alpha == 1.0:
        return o.make("matmul", [o.inp("X"), o.inp("Y")], [o.out("Out")], attrs)
    tmp = o.out("Out") + "@pdc_matmul"
    return [o.make("matmul", [o.inp("X"), o.inp("Y")], [tmp], attrs),
            o.make("scale", [tmp, Const(np.float32(alpha))], [o.out("Out")], {"bias": 0.0})]


@adapter("mul")
def mul(o: LegacyOp):
    return o.make("legacy_mul", [o.inp("X"), o.inp("Y")], [o.out("Out")], o.attrs)


# ---- convolution, normalization, pooling ------------------------------------------------------
@adapter("conv2d", "depthwise_conv2d", "conv3d")
def conv(o: LegacyOp):
    if o.inp("Bias") or o.inp("ResidualData"):
        return unsupported(o, f"{o.type} with a fused bias")  # not something jit.save writes
    return o.make(o.type, [o.inp("Input"), o.inp("Filter")], [o.out("Output")], o.attrs)


@adapter("conv2d_transpose", "depthwise_conv2d_transpose", "conv3d_transpose")
def conv_transpose(o: LegacyOp):
    if o.inp("Bias"):
        return unsupported(o, f"{o.type} with a fused bias")
    size = o.attr("output_size", [])
    return o.make(o.type, [o.inp("Input"), o.inp("Filter"), Const(np.asarray(size, np.int64)) if size else None],
                  [o.out("Output")], o.attrs)


@adapter("batch_norm")
def batch_norm(o: LegacyOp):
    return o.make("batch_norm", [o.inp("X"), o.inp("Mean"), o.inp("Variance"), o.inp("Scale"), o.inp("Bias")],
                  [o.out("Y")], renamed(o.attrs, {"data_layout": "data_format"}))


@adapter("layer_norm", "group_norm", "instance_norm")
def norm(o: LegacyOp):
    return o.make(o.type, [o.inp("X"), o.inp("Scale"), o.inp("Bias")], [o.out("Y")],
                  renamed(o.attrs, {"data_layout": "data_format"}))


@adapter("pool2d", "pool3d")
def pool(o: LegacyOp):
    return o.make(o.type, [o.inp("X"), Const(np.asarray(o.attr("ksize", []), np.int64))], [o.out("Out")], o.attrs)


@adapter("max_pool2d_with_index", "max_pool3d_with_index")
def max_pool_with_index(o: LegacyOp):
    return o.make(o.type, [o.inp("X")], [o.out("Out"), o.out("Mask")],
                  {**renamed(o.attrs, {"ksize": "kernel_size"}), "pooling_type": "max"})


@adapter("dropout")
def dropout(o: LegacyOp):
    return o.make("dropout", [o.inp("X"), None, Const(np.asarray([o.attr("dropout_prob", 0.5)], np.float32))],
                  [o.out("Out")], {"mode": o.attr("dropout_implementation", "downgrade_in_infer"),
                                   "is_test": o.attr("is_test", True)})


@adapter("prelu")
def prelu(o: LegacyOp):
    return o.make("prelu", [o.inp("X"), o.inp("Alpha")], [o.out("Out")], o.attrs)


# ---- elementwise with attribute operands ------------------------------------------------------
@adapter("scale")
def scale(o: LegacyOp):
    s = o.inp("ScaleTensor") or Const(np.asarray([o.attr("scale", 1.0)], np.float32))
    return o.make("scale", [o.inp("X"), s], [o.out("Out")],
                  {"bias": o.attr("bias", 0.0), "bias_after_scale": o.attr("bias_after_scale", True)})


@adapter("clip")
def clip(o: LegacyOp):
    lo = o.inp("Min") or Const(np.asarray([o.attr("min", -np.inf)], np.float32))
    hi = o.inp("Max") or Const(np.asarray([o.attr("max", np.inf)], np.float32))
    return o.make("clip", [o.inp("X"), lo, hi], [o.out("Out")])


@adapter("pow")
def pow_op(o: LegacyOp):
    return o.make("pow", [o.inp("X"), o.inp("FactorTensor")], [o.out("Out")], {"y": o.attr("factor", 1.0)})


@adapter("where")
def where(o: LegacyOp):
    return o.make("where", [o.inp("Condition"), o.inp("X"), o.inp("Y")], [o.out("Out")])


@adapter("cast")
def cast(o: LegacyOp):
    return o.make("cast", [o.inp("X")], [o.out("Out")], {"dtype": dtype_name(o.attr("out_dtype"))})


@adapter("sum")
def add_n(o: LegacyOp):
    return o.make("add_n", [o.inps("X")], [o.out("Out")])


# ---- constants --------------------------------------------------------------------------------
@adapter("fill_constant")
def fill_constant(o: LegacyOp):
    dtype = dtype_name(o.attr("dtype"), "float32")
    text = o.attr("str_value", "")
    value = float(text) if text else float(o.attr("value", 0.0))
    shape = o.inp("ShapeTensor") or (o.inps("ShapeTensorList") or None)
    if shape is None and not o.inp("ValueTensor"):
        return o.make("full", [], [o.out("Out")], {"shape": list(o.attr("shape", [])), "value": value, "dtype": dtype})
    if shape is None:
        shape = Const(np.asarray(o.attr("shape", []), np.int64))
    v = o.inp("ValueTensor") or Const(np.asarray([value], np.float64))
    return o.make("full_with_tensor", [v, shape], [o.out("Out")], {"dtype": dtype})


@adapter("fill_constant_batch_size_like")
def fill_constant_batch_size_like(o: LegacyOp):
    text = o.attr("str_value", "")
    return o.make("full_batch_size_like", [o.inp("Input")], [o.out("Out")],
                  {"shape": list(o.attr("shape", [])), "value": float(text) if text else float(o.attr("value", 0.0)),
                   "dtype": dtype_name(o.attr("dtype"), "float32"), "input_dim_idx": o.attr("input_dim_idx", 0),
                   "output_dim_idx": o.attr("output_dim_idx", 0)})


@adapter("fill_any_like")
def fill_any_like(o: LegacyOp):
    return o.make("full_like", [o.inp("X"), Const(np.asarray([o.attr("value", 0.0)], np.float64))], [o.out("Out")],
                  {"dtype": dtype_name(o.attr("dtype"))})


@adapter("assign_value")
def assign_value(o: LegacyOp):
    values = next((o.attr(k) for k in ("values", "fp32_values", "fp64_values", "int32_values", "int64_values",
                                       "bool_values") if o.attr(k)), [])
    return o.make("assign_value", [], [o.out("Out")],
                  {"shape": list(o.attr("shape", [])), "dtype": dtype_name(o.attr("dtype"), "float32"),
                   "values": list(values)})


@adapter("range")
def arange(o: LegacyOp):
    t = o.parser.type_of(o.out("Out"))
    return o.make("arange", [o.inp("Start"), o.inp("End"), o.inp("Step")], [o.out("Out")],
                  {"dtype": t.dtype.name if t is not None else None})


# ---- shapes -----------------------------------------------------------------------------------
@adapter("reshape2", "reshape")
def reshape(o: LegacyOp):
    shape = o.tensor_or_const("Shape", "shape", list_slot="ShapeTensor")
    return o.make("reshape", [o.inp("X"), shape], [o.out("Out")])


@adapter("squeeze2", "squeeze")
def squeeze(o: LegacyOp):
    return o.make("squeeze", [o.inp("X"), Const(np.asarray(o.attr("axes", []), np.int64))], [o.out("Out")])


@adapter("unsqueeze2", "unsqueeze")
def unsqueeze(o: LegacyOp):
    axes = o.tensor_or_const("AxesTensor", "axes", list_slot="AxesTensorList")
    return o.make("unsqueeze", [o.inp("X"), axes], [o.out("Out")])


@adapter("concat")
def concat(o: LegacyOp):
    axis = o.inp("AxisTensor") or Const(np.asarray(o.attr("axis", 0), np.int64))
    return o.make("concat", [o.inps("X"), axis], [o.out("Out")])


@adapter("split")
def split(o: LegacyOp):
    axis = o.inp("AxisTensor") or Const(np.asarray(o.attr("axis", 0), np.int64))
    outs = o.outs("Out")
    if int(o.attr("num", 0)) > 0:
        return o.make("split_with_num", [o.inp("X"), axis], [outs], {"num": int(o.attr("num"))})
    sections = o.inps("SectionsTensorList") or Const(np.asarray(o.attr("sections", []), np.int64))
    return o.make("split", [o.inp("X"), sections, axis], [outs])


@adapter("stack")
def stack(o: LegacyOp):
    return o.make("stack", [o.inps("X")], [o.out("Y")], o.attrs)


@adapter("unstack")
def unstack(o: LegacyOp):
    return o.make("unstack", [o.inp("X")], [o.outs("Y")], o.attrs)


@adapter("slice", "strided_slice")
def slice_op(o: LegacyOp):
    starts = o.tensor_or_const("StartsTensor", "starts", list_slot="StartsTensorList")
    ends = o.tensor_or_const("EndsTensor", "ends", list_slot="EndsTensorList")
    operands = [o.inp("Input"), starts, ends]
    if o.type == "strided_slice":
        operands.append(o.tensor_or_const("StridesTensor", "strides", list_slot="StridesTensorList"))
    return o.make(o.type, operands, [o.out("Out")], o.attrs)


@adapter("expand_v2")
def expand(o: LegacyOp):
    shape = o.tensor_or_const("Shape", "shape", list_slot="expand_shapes_tensor")
    return o.make("expand", [o.inp("X"), shape], [o.out("Out")])


@adapter("expand_as_v2")
def expand_as(o: LegacyOp):
    return o.make("expand_as", [o.inp("X"), o.inp("Y")], [o.out("Out")], o.attrs)


@adapter("tile")
def tile(o: LegacyOp):
    reps = o.tensor_or_const("RepeatTimes", "repeat_times", list_slot="repeat_times_tensor")
    return o.make("tile", [o.inp("X"), reps], [o.out("Out")])


@adapter("gather")
def gather(o: LegacyOp):
    axis = o.inp("Axis") or Const(np.asarray(o.attr("axis", 0), np.int64))
    return o.make("gather", [o.inp("X"), o.inp("Index"), axis], [o.out("Out")])


@adapter("index_select")
def index_select(o: LegacyOp):
    return o.make("index_select", [o.inp("X"), o.inp("Index")], [o.out("Out")], {"axis": o.attr("dim", 0)})


@adapter("gather_nd")
def gather_nd(o: LegacyOp):
    return o.make("gather_nd", [o.inp("X"), o.inp("Index")], [o.out("Out")])


@adapter("take_along_axis")
def take_along_axis(o: LegacyOp):
    return o.make("take_along_axis", [o.inp("Input"), o.inp("Index")], [o.out("Result")],
                  {"axis": o.attr("Axis", 0)})


@adapter("lookup_table_v2")
def embedding(o: LegacyOp):
    return o.make("embedding", [o.inp("Ids"), o.inp("W")], [o.out("Out")], {"padding_idx": o.attr("padding_idx", -1)})


# ---- reductions ---------------------------------------------------------------------------------
REDUCE = {"reduce_mean": "mean", "reduce_sum": "sum", "reduce_max": "max", "reduce_min": "min",
          "reduce_prod": "prod", "reduce_any": "any", "reduce_all": "all", "logsumexp": "logsumexp"}


@adapter(*REDUCE)
def reduce(o: LegacyOp):
    dims = o.attr("dim", o.attr("axis", []))
    attrs = {"keepdim": o.attr("keep_dim", o.attr("keepdim", False)), "reduce_all": o.attr("reduce_all", False)}
    if o.type == "reduce_sum":
        attrs["dtype"] = dtype_name(o.attr("out_dtype"))
    return o.make(REDUCE[o.type], [o.inp("X"), Const(np.asarray(dims, np.int64))], [o.out("Out")], attrs)


@adapter("arg_max", "arg_min")
def argmax(o: LegacyOp):
    return o.make(o.type.replace("_", ""), [o.inp("X"), Const(np.asarray(o.attr("axis", -1), np.int64))],
                  [o.out("Out")], {"keepdims": o.attr("keepdims", False), "flatten": o.attr("flatten", False),
                                   "dtype": dtype_name(o.attr("dtype"), "int64")})


@adapter("top_k_v2")
def topk(o: LegacyOp):
    k = o.inp("K") or Const(np.asarray([o.attr("k", 1)], np.int64))
    return o.make("topk", [o.inp("X"), k], [o.out("Out"), o.out("Indices")], o.attrs)


# ---- resizing, padding ---------------------------------------------------------------------------
@adapter("bilinear_interp_v2", "nearest_interp_v2", "bicubic_interp_v2", "linear_interp_v2", "trilinear_interp_v2")
def interp(o: LegacyOp):
    return o.make(o.type[:-3], [o.inp("X"), o.inp("OutSize"), o.inps("SizeTensor") or None, o.inp("Scale")],
                  [o.out("Out")], o.attrs)


@adapter("pad3d")
def pad3d(o: LegacyOp):
    p = o.inp("Paddings") or Const(np.asarray(o.attr("paddings", []), np.int64))
    return o.make("pad3d", [o.inp("X"), p], [o.out("Out")], o.attrs)


# ---- recurrent networks ---------------------------------------------------------------------------
@adapter("rnn")
def rnn(o: LegacyOp):
    return o.make("rnn", [o.inp("Input"), o.inps("PreState"), o.inps("WeightList"), o.inp("SequenceLength"), None],
                  [o.out("Out"), None, o.outs("State"), None], o.attrs)


# ---- quantization (paddle.quantization's converted models; lowered in quant.py) --------------------
@adapter("quantize_linear", "dequantize_linear")
def quantize_linear(o: LegacyOp):
    return o.make(o.type, [o.inp("X"), o.inp("Scale"), o.inp("ZeroPoint"), o.inp("InAccum"), o.inp("InState")],
                  [o.out("Y"), o.out("OutState"), o.out("OutAccum"), o.out("OutScale")], o.attrs)
