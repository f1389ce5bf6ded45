"""Shape and data-movement ops (reshape ... eye_like) against ONNX Runtime, across opset forms,
plus type inference with symbolic dims and the clear-error cases."""
import numpy as np
import pytest
from onnx import helper, numpy_helper

from pdc.frontend.onnx_import import import_onnx
from pdc.ir import dtypes, run_graph
from pdc.ir.errors import PdcError, UnsupportedError, VerifyError
from pdc.ir.graph import Node, Value
from pdc.ir.registry import with_defaults, get_op
from pdc.ir.types import TensorType
from pdc.ir.verify import infer_node
from tensor_helpers import check, make_model, pdc_graph, randn, run_pdc

I64 = np.int64
BIG = np.iinfo(np.int64).max


def ints(*v):
    return np.array(v, I64)


def infer(op, inputs, attrs=None, n_out=1):
    """Output types of one IR node; inputs are TensorTypes (runtime values) or arrays (constants)."""
    vals = []
    for i, x in enumerate(inputs):
        if x is None:
            vals.append(None)
        elif isinstance(x, TensorType):
            vals.append(Value(f"i{i}", x))
        else:
            x = np.asarray(x)
            vals.append(Value(f"i{i}", TensorType(dtypes.from_numpy(x.dtype), x.shape), x))
    outs = [Value(f"o{i}", TensorType(dtypes.float32, None)) for i in range(n_out)]
    node = Node(op, vals, outs, with_defaults(get_op(op), attrs or {}))
    return [t.shape for t in infer_node(node)]


F = dtypes.float32


def T(*shape):
    return TensorType(F, shape)


# ---- reshape --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 6), (2, -1), (0, 3, -1), (-1,), (2, 0, 4), (24, 1)])
@pytest.mark.parametrize("const", [True, False])
def test_reshape(shape, const):
    g = check("Reshape", [("x", randn(2, 3, 4)), ("s", ints(*shape))], consts=("s",) if const else ())
    assert g.outputs[0].type.is_static == const


def test_reshape_allowzero():
    check("Reshape", [("x", randn(0, 3, 4)), ("s", ints(3, 4, 0))], {"allowzero": 1}, consts=("s",))
    check("Reshape", [("x", randn(3, 4, 0)), ("s", ints(0, 0, 0, 5))], opset=13, consts=("s",))


def test_reshape_infer_symbolic():
    assert infer("reshape", [T("N", 3, 4), ints(0, -1)]) == [("N", 12)]
    assert infer("reshape", [T("N", 3, 4), ints(-1, 12)]) == [("N", 12)]
    assert infer("reshape", [T("N", 3, 4), ints(-1, 4)]) == [("?", 4)]
    assert infer("reshape", [T("N", "C", 4), ints(0, 0, 2, 2)]) == [("N", "C", 2, 2)]
    assert infer("reshape", [T(2, 3, 4), TensorType(dtypes.int64, (3,))]) == [("?", "?", "?")]
    assert infer("reshape", [T(2, 3, 4), TensorType(dtypes.int64, ("k",))]) == [None]


def test_reshape_errors():
    with pytest.raises(VerifyError, match="more than one -1"):
        infer("reshape", [T(2, 3), ints(-1, -1)])
    with pytest.raises(VerifyError, match="cannot reshape"):
        infer("reshape", [T(2, 3), ints(4, 2)])
    with pytest.raises(VerifyError, match="sizes do not divide"):
        infer("reshape", [T(2, 3), ints(4, -1)])
    model, feeds = make_model("Reshape", [("x", randn(2, 3)), ("s", ints(4, 2))])
    with pytest.raises(PdcError, match="cannot reshape"):
        run_pdc(model, feeds)


# ---- transpose / concat ---------------------------------------------------------------------
@pytest.mark.parametrize("perm", [None, [0, 2, 1], [2, 0, 1], [1, 0, 2]])
def test_transpose(perm):
    check("Transpose", [("x", randn(2, 3, 4))], {} if perm is None else {"perm": perm})


def test_transpose_bad_perm():
    with pytest.raises(VerifyError, match="not a permutation"):
        infer("transpose", [T(2, 3)], {"perm": [0, 0]})


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for s in shapes[1:]:
        s[axis] = [1, 0][shapes.index(s) - 1]
    check("Concat", [(f"x{i}", randn(*s)) for i, s in enumerate(shapes)], {"axis": axis})


def test_concat_infer_symbolic():
    assert infer("concat", [T("N", 3), T("N", 5)], {"axis": 1}) == [("N", 8)]
    assert infer("concat", [T("N", 3), T(2, 3)], {"axis": 0}) == [("?", 3)]
    with pytest.raises(VerifyError, match="differ"):
        infer("concat", [T(2, 3), T(3, 3)], {"axis": 1})


# ---- split ----------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [11, 13, 18])
def test_split_sizes(opset):
    x = randn(3, 7)
    if opset < 13:
        check("Split", [("x", x)], {"axis": 1, "split": [2, 0, 5]}, opset=opset, n_out=3)
    else:
        check("Split", [("x", x), ("s", ints(2, 0, 5))], {"axis": -1}, opset=opset, n_out=3, consts=("s",))


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_split_equal(opset):
    attrs = {"axis": 0, "num_outputs": 3} if opset >= 18 else {"axis": 0}
    check("Split", [("x", randn(6, 2))], attrs, opset=opset, n_out=3)


def test_split_uneven_num_outputs():
    g = check("Split", [("x", randn(7, 2))], {"num_outputs": 3}, opset=18, n_out=3)
    assert [v.type.shape[0] for v in g.outputs] == [3, 3, 1]


def test_split_errors():
    with pytest.raises(VerifyError, match="does not add up"):
        infer("split", [T(6), ints(2, 2)], {}, n_out=2)
    with pytest.raises(VerifyError, match="cannot split"):
        infer("split", [T(5)], {"num_outputs": 4}, n_out=4)


# ---- slice ----------------------------------------------------------------------------------
SLICES = [  # starts, ends, axes, steps
    ([0, 1], [2, 3], None, None),
    ([1], [BIG], [1], None),
    ([-1], [-BIG], [0], [-1]),
    ([20, -20], [-20, 20], [1, 2], [-2, 3]),
    ([3, 0], [0, 100], [-1, 0], [-1, 2]),
    ([5], [1], [2], [1]),  # empty
    ([-2], [-1], [-2], [1]),
]


@pytest.mark.parametrize("starts,ends,axes,steps", SLICES)
@pytest.mark.parametrize("const", [True, False])
def test_slice(starts, ends, axes, steps, const):
    inputs = [("x", randn(4, 5, 6)), ("s", ints(*starts)), ("e", ints(*ends))]
    if axes is not None or steps is not None:
        inputs.append(("a", ints(*axes)) if axes is not None else ("", None))
    if steps is not None:
        inputs.append(("t", ints(*steps)))
    g = check("Slice", inputs, consts=("s", "e", "a", "t") if const else ())
    assert g.outputs[0].type.is_static == const or not const and g.outputs[0].type.is_static


def test_slice_opset9_attrs():
    check("Slice", [("x", randn(4, 5))], {"starts": [1, -3], "ends": [BIG, -1], "axes": [0, 1]}, opset=9)
    check("Slice", [("x", randn(4, 5))], {"starts": [1], "ends": [3]}, opset=7)


def test_slice_infer_symbolic():
    assert infer("slice", [T("N", 10), ints(0, 2), ints(BIG, 8)]) == [("N", 6)]
    assert infer("slice", [T("N", 10), ints(1), ints(BIG)]) == [("?", 10)]
    assert infer("slice", [T("N", 10), TensorType(dtypes.int64, (1,)), ints(3), ints(1)]) == [("N", "?")]


# ---- squeeze / unsqueeze --------------------------------------------------------------------
@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [None, [0], [-1, 2]])
def test_squeeze(opset, axes):
    x = randn(1, 3, 1, 1)
    if axes is None:
        check("Squeeze", [("x", x)], opset=opset)
    elif opset < 13:
        check("Squeeze", [("x", x)], {"axes": axes}, opset=opset)
    else:
        check("Squeeze", [("x", x), ("a", ints(*axes))], opset=opset, consts=("a",))


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [[0], [-1], [3, 0], [1, -1]])
def test_unsqueeze(opset, axes):
    x = randn(2, 3)
    if opset < 13:
        check("Unsqueeze", [("x", x)], {"axes": axes}, opset=opset)
    else:
        check("Unsqueeze", [("x", x), ("a", ints(*axes))], opset=opset, consts=("a",))


def test_squeeze_errors():
    with pytest.raises(VerifyError, match="cannot squeeze axis 1 of size 3"):
        infer("squeeze", [T(1, 3), ints(1)])
    with pytest.raises(VerifyError, match="repeat an axis"):
        infer("unsqueeze", [T(2, 3), ints(0, -4)])
    assert infer("squeeze", [T("N", 1, 3)]) == [None]  # whether N is 1 is unknown


# ---- expand / tile --------------------------------------------------------------------------
@pytest.mark.parametrize("xs,shape", [((3, 1), (2, 3, 4)), ((1, 4), (3, 1)), ((2, 1, 4), (1, 3, 1))])
def test_expand(xs, shape):
    check("Expand", [("x", randn(*xs)), ("s", ints(*shape))], consts=("s",))
    check("Expand", [("x", randn(*xs)), ("s", ints(*shape))])


def test_expand_infer():
    assert infer("expand", [T("N", 1), ints(1, 5)]) == [("N", 5)]
    assert infer("expand", [T(3, 1), TensorType(dtypes.int64, (3,))]) == [("?", 3, "?")]


@pytest.mark.parametrize("reps", [(1, 1), (2, 3), (0, 2)])
def test_tile(reps):
    check("Tile", [("x", randn(2, 3)), ("r", ints(*reps))], consts=("r",))


# ---- pad ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads", [[0, 1, 2, 1, 0, 2], [1, 0, 0, 0, 2, 1], [0, -1, 1, 0, 1, -2]])
def test_pad_modes(mode, pads):
    inputs = [("x", randn(2, 4, 5)), ("p", ints(*pads))]
    if mode == "constant":
        inputs.append(("v", np.array(1.5, np.float32)))
    check("Pad", inputs, {"mode": mode}, opset=19, consts=("p",))


def test_pad_axes_and_ints():
    check("Pad", [("x", randn(2, 4, 5)), ("p", ints(1, 2, 0, 3)), ("", None), ("a", ints(-1, 0))],
          {"mode": "edge"}, consts=("p", "a"))
    check("Pad", [("x", np.arange(12, dtype=np.int32).reshape(3, 4)), ("p", ints(1, 1, 1, 1)),
                  ("v", np.array(7, np.int32))], consts=("p",))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_opset10_attrs(mode):
    check("Pad", [("x", randn(3, 4))], {"mode": mode, "pads": [1, 2, 2, 1], "value": 2.0}, opset=10)


def test_pad_errors():
    with pytest.raises(UnsupportedError, match="mode 'mirror' is not supported"):
        pdc_graph("Pad", [("x", randn(3, 4)), ("p", ints(1, 1, 1, 1))], {"mode": "mirror"}, consts=("p",))
    with pytest.raises(VerifyError, match="pads has 2 entries"):
        infer("pad", [T(3, 4), ints(1, 1)])


# ---- shape / size / constant_of_shape / range -----------------------------------------------
@pytest.mark.parametrize("se", [{}, {"start": 1}, {"end": -1}, {"start": -2, "end": 10}, {"start": 2, "end": 1}])
def test_shape(se):
    check("Shape", [("x", randn(2, 3, 4))], se, opset=15)


def test_size_and_shape_infer():
    check("Size", [("x", randn(2, 3, 4))])
    assert infer("shape", [T("N", 3)], {"start": 1}) == [(1,)]
    assert infer("shape", [TensorType(F, None)]) == [("?",)]


@pytest.mark.parametrize("value", [None, np.array([2.5], np.float32), np.array([3], np.int32),
                                   np.array([True])])
def test_constant_of_shape(value):
    attrs = {} if value is None else {"value": numpy_helper.from_array(value, "v")}
    check("ConstantOfShape", [("s", ints(2, 3))], attrs, consts=("s",))
    check("ConstantOfShape", [("s", ints(2, 0))], attrs)


@pytest.mark.parametrize("vals,dt", [((0, 10, 3), np.int64), ((10, 2, -3), np.int32), ((1.0, 4.2, 0.5), np.float32),
                                     ((5.0, 1.0, 1.0), np.float32), ((0.0, 1.0, 0.3), np.float64)])
@pytest.mark.parametrize("const", [True, False])
def test_range(vals, dt, const):
    inputs = [(n, np.array(v, dt)) for n, v in zip("sld", vals)]
    g = check("Range", inputs, consts="sld" if const else ())
    assert g.outputs[0].type.is_static == const


# ---- trilu / cum_sum / eye_like -------------------------------------------------------------
@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, -1, 0, 2, 7])
def test_trilu(upper, k):
    inputs = [("x", randn(2, 4, 5))] + ([] if k is None else [("k", np.array(k, I64))])
    check("Trilu", inputs, {"upper": upper})


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("axis,dt", [(0, np.float32), (-1, np.float64), (1, np.int32), (2, np.int64)])
def test_cum_sum(exclusive, reverse, axis, dt):
    x = (randn(3, 4, 5) * 4).astype(dt)
    check("CumSum", [("x", x), ("a", np.array(axis, np.int32))], {"exclusive": exclusive, "reverse": reverse})


@pytest.mark.parametrize("k", [-2, 0, 1, 5])
@pytest.mark.parametrize("dtype", [None, 7])  # 7: INT64
def test_eye_like(k, dtype):
    attrs = {"k": k} | ({} if dtype is None else {"dtype": dtype})
    check("EyeLike", [("x", randn(3, 4))], attrs)


def test_symbolic_input_end_to_end():
    """A model with a symbolic batch dim keeps the symbol through reshape and runs any batch."""
    x = helper.make_tensor_value_info("x", 1, ["N", 3, 4])
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"]), helper.make_node("Transpose", ["y"], ["out"])]
    graph = helper.make_graph(nodes, "t", [x], [helper.make_tensor_value_info("out", 1, None)],
                              [numpy_helper.from_array(ints(0, -1), "s")])
    g = import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    assert g.outputs[0].type.shape == (12, "N")
    a = randn(5, 3, 4)
    np.testing.assert_array_equal(run_graph(g, {"x": a})["out"], a.reshape(5, 12).T)
