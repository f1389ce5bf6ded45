"""Hand-built zoo models, written with onnx.helper (no Paddle).

Each `build_<name>(out_dir, params)` writes `model.onnx` (and any side files) into `out_dir`.
Weights come from a seeded generator, so a model is the same every time it is built.
tests/zoo.py hashes this file's source into the cache key: editing it rebuilds these models.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MODEL_FILE = "model.onnx"


def _rng(params) -> np.random.Generator:
    return np.random.default_rng(params.get("seed", 0))


def _weight(rng, name, shape, scale=None) -> onnx.TensorProto:
    # He-style scaling keeps activations in a sane range through a few layers
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
    scale = scale if scale is not None else np.sqrt(2.0 / max(fan_in, 1))
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _ints(name, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _save(graph, out_dir, opset, **save_kwargs) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="pdc-zoo")
    model.ir_version = min(model.ir_version, 8)  # readable by older onnxruntime builds too
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, os.path.join(out_dir, MODEL_FILE), **save_kwargs)


def _f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


# ---------------------------------------------------------------------------------------------
def build_tiny_cnn(out_dir, params) -> None:
    """Conv + BatchNormalization + Relu + MaxPool + Flatten + Gemm + Softmax on a 16x16 image."""
    rng, c, n_cls = _rng(params), 8, 10
    h = params.get("size", 16)
    inits = [
        _weight(rng, "conv_w", [c, 3, 3, 3]),
        _weight(rng, "conv_b", [c], 0.1),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, c).astype(np.float32), "bn_scale"),
        numpy_helper.from_array((rng.standard_normal(c) * 0.1).astype(np.float32), "bn_bias"),
        numpy_helper.from_array((rng.standard_normal(c) * 0.1).astype(np.float32), "bn_mean"),
        numpy_helper.from_array(rng.uniform(0.5, 2.0, c).astype(np.float32), "bn_var"),
        _weight(rng, "fc_w", [n_cls, c * (h // 2) ** 2]),
        _weight(rng, "fc_b", [n_cls], 0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["conv", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn"],
                         epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["relu"]),
        helper.make_node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(nodes, "tiny_cnn", [_f32("x", [1, 3, h, h])], [_f32("y", [1, n_cls])], inits)
    _save(graph, out_dir, params["opset"])


def build_shape_fold(out_dir, params) -> None:
    """Reshape whose target shape comes from Shape -> Gather -> Concat on a static input: folds to [1, -1]."""
    rng = _rng(params)
    inits = [_ints("idx0", [0]), _ints("minus1", [-1]), _weight(rng, "w", [4 * 8 * 8, 10])]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Shape", ["r"], ["shape"]),
        helper.make_node("Gather", ["shape", "idx0"], ["batch"], axis=0),
        helper.make_node("Concat", ["batch", "minus1"], ["new_shape"], axis=0),
        helper.make_node("Reshape", ["r", "new_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "shape_fold", [_f32("x", [1, 4, 8, 8])], [_f32("y", [1, 10])], inits)
    _save(graph, out_dir, params["opset"])


def build_symbolic_batch(out_dir, params) -> None:
    """A CNN whose batch dim is the symbol N, with a Shape-driven Reshape that cannot fold."""
    rng = _rng(params)
    inits = [
        _weight(rng, "conv_w", [8, 3, 3, 3]),
        _weight(rng, "conv_b", [8], 0.1),
        _weight(rng, "fc_w", [8, 10]),
        _weight(rng, "fc_b", [10], 0.1),
        _ints("idx0", [0]), _ints("minus1", [-1]),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["conv"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["gap"]),
        helper.make_node("Shape", ["gap"], ["shape"]),
        helper.make_node("Gather", ["shape", "idx0"], ["batch"], axis=0),
        helper.make_node("Concat", ["batch", "minus1"], ["new_shape"], axis=0),
        helper.make_node("Reshape", ["gap", "new_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc_w"], ["mm"]),
        helper.make_node("Add", ["mm", "fc_b"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "symbolic_batch", [_f32("x", ["N", 3, 16, 16])], [_f32("y", ["N", 10])], inits)
    _save(graph, out_dir, params["opset"])


def build_external_data(out_dir, params) -> None:
    """A two-layer MLP whose weights live in a side file (weights.bin) next to the model."""
    rng = _rng(params)
    inits = [_weight(rng, "w1", [64, 128]), _weight(rng, "b1", [128], 0.1),
             _weight(rng, "w2", [128, 16]), _weight(rng, "b2", [16], 0.1)]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["hr"]),
        helper.make_node("MatMul", ["hr", "w2"], ["o"]),
        helper.make_node("Add", ["o", "b2"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "external_data", [_f32("x", [2, 64])], [_f32("y", [2, 16])], inits)
    _save(graph, out_dir, params["opset"], save_as_external_data=True, all_tensors_to_one_file=True,
          location="weights.bin", size_threshold=0)


def build_mlp(out_dir, params) -> None:
    """Gemm -> Relu -> Gemm (transA/alpha/beta) -> Tanh -> Gemm -> Sigmoid."""
    rng = _rng(params)
    inits = [_weight(rng, "w1", [64, 20]), _weight(rng, "b1", [64], 0.1),
             _weight(rng, "w2", [64, 32]), _weight(rng, "b2", [1, 32], 0.1),
             _weight(rng, "w3", [5, 32]), _weight(rng, "b3", [5], 0.1)]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], transB=1),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("Transpose", ["r1"], ["r1t"], perm=[1, 0]),
        helper.make_node("Gemm", ["r1t", "w2", "b2"], ["h2"], transA=1, alpha=0.5, beta=2.0),
        helper.make_node("Tanh", ["h2"], ["t2"]),
        helper.make_node("Gemm", ["t2", "w3", "b3"], ["h3"], transB=1),
        helper.make_node("Sigmoid", ["h3"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "mlp", [_f32("x", [4, 20])], [_f32("y", [4, 5])], inits)
    _save(graph, out_dir, params["opset"])


def jet_data(params) -> dict:
    """A jet-tagging-style task from scikit-learn's make_classification (16 features, 5 classes),
    standardized on the training split: x_train, y_train, x_test, y_test."""
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split
    x, y = make_classification(n_samples=params.get("samples", 4000), n_features=16, n_informative=12,
                               n_redundant=2, n_classes=5, n_clusters_per_class=2, class_sep=1.2,
                               random_state=params.get("seed", 0))
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    return {"x_train": ((x_tr - mean) / std).astype(np.float32), "y_train": y_tr.astype(np.int64),
            "x_test": ((x_te - mean) / std).astype(np.float32), "y_test": y_te.astype(np.int64)}


def build_jet_mlp(out_dir, params) -> None:
    """16-64-32-32-5 ReLU MLP (MatMul + Add per layer, logits out) trained by scikit-learn's MLPClassifier
    on jet_data; data.npz beside the model holds the split."""
    from sklearn.neural_network import MLPClassifier
    data = jet_data(params)
    clf = MLPClassifier(hidden_layer_sizes=(64, 32, 32), max_iter=params.get("epochs", 200), random_state=0)
    clf.fit(data["x_train"], data["y_train"])
    nodes, inits, cur = [], [], "x"
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [cur, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"h{i}"])]
        cur = f"h{i}"
        if i < len(clf.coefs_) - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"r{i}"]))
            cur = f"r{i}"
    nodes[-1].output[0] = "logits"
    graph = helper.make_graph(nodes, "jet_mlp", [_f32("x", [1, 16])], [_f32("logits", [1, 5])], inits)
    _save(graph, out_dir, params["opset"])
    np.savez(os.path.join(out_dir, "data.npz"), **data)


BUILDERS = {
    "tiny_cnn": build_tiny_cnn,
    "shape_fold": build_shape_fold,
    "symbolic_batch": build_symbolic_batch,
    "external_data": build_external_data,
    "mlp": build_mlp,
    "jet_mlp": build_jet_mlp,
}


def build(builder: str, out_dir: str, params: dict) -> None:
    BUILDERS[builder](out_dir, params)
