import numpy as np
import pytest

from .pass_checks import check_zoo_model
from .util import check_pass

RNG = np.random.default_rng(0)


def bn_params(c, prefix=""):
    return {prefix + "s": RNG.uniform(0.5, 2, c), prefix + "b": RNG.standard_normal(c),
            prefix + "m": RNG.standard_normal(c), prefix + "v": RNG.uniform(0.1, 2, c)}


BN_CONSTS = """
          %s = const f32[4]
          %b = const f32[4]
          %m = const f32[4]
          %v = const f32[4]"""


def test_folds_into_conv_weights_and_bias():
    check_pass("fold-batchnorm", """
        graph @g(%x: f32[1,3,5,5]) -> (%y: f32[1,4,5,5]) {
          %w = const f32[4,3,3,3]
          %cb = const f32[4]""" + BN_CONSTS + """
          %c = conv(%x, %w, %cb) {pads=[1,1,1,1]} : f32[1,4,5,5]
          %y = batch_normalization(%c, %s, %b, %m, %v) {epsilon=0.001} : f32[1,4,5,5]
        }""", """
        graph @g(%x: f32[1,3,5,5]) -> (%y: f32[1,4,5,5]) {
          %w_0 = const f32[4,3,3,3]
          %w.bias_0 = const f32[4]
          %y = conv(%x, %w_0, %w.bias_0) {pads=[1, 1, 1, 1]} : f32[1,4,5,5]
        }""", constants=bn_params(4))


def test_conv_with_a_second_reader_gets_a_scale_shift():
    check_pass("fold-batchnorm", """
        graph @g(%x: f32[1,3,5,5]) -> (%y: f32[1,4,5,5], %c: f32[1,4,5,5]) {
          %w = const f32[4,3,1,1]""" + BN_CONSTS + """
          %c = conv(%x, %w) : f32[1,4,5,5]
          %y = batch_normalization(%c, %s, %b, %m, %v) : f32[1,4,5,5]
        }""", """
        graph @g(%x: f32[1,3,5,5]) -> (%y: f32[1,4,5,5], %c: f32[1,4,5,5]) {
          %w = const f32[4,3,1,1]
          %s.scale_0 = const f32[4,1,1]
          %b.shift_0 = const f32[4,1,1]
          %c = conv(%x, %w) : f32[1,4,5,5]
          %y.scaled0 = mul(%c, %s.scale_0) : f32[1,4,5,5]
          %y = add(%y.scaled0, %b.shift_0) : f32[1,4,5,5]
        }""", constants=bn_params(4))


def test_gemm_with_transposed_weights_and_bias():
    check_pass("fold-batchnorm", """
        graph @g(%x: f32[2,3]) -> (%y: f32[2,4]) {
          %w = const f32[4,3]
          %c = const f32[1,4]""" + BN_CONSTS + """
          %h = gemm(%x, %w, %c) {beta=0.5, transB=1} : f32[2,4]
          %y = batch_normalization(%h, %s, %b, %m, %v) : f32[2,4]
        }""", """
        graph @g(%x: f32[2,3]) -> (%y: f32[2,4]) {
          %w_0 = const f32[4,3]
          %w.bias_0 = const f32[1,4]
          %y = gemm(%x, %w_0, %w.bias_0) {beta=1.0, transB=1} : f32[2,4]
        }""", constants=bn_params(4))


def test_matmul_keeps_the_shift_as_a_bias_add():
    check_pass("fold-batchnorm", """
        graph @g(%x: f32[2,3]) -> (%y: f32[2,4]) {
          %w = const f32[3,4]""" + BN_CONSTS + """
          %h = matmul(%x, %w) : f32[2,4]
          %y = batch_normalization(%h, %s, %b, %m, %v) : f32[2,4]
        }""", """
        graph @g(%x: f32[2,3]) -> (%y: f32[2,4]) {
          %w_0 = const f32[3,4]
          %w.bias_0 = const f32[4]
          %h = matmul(%x, %w_0) : f32[2,4]
          %y = add(%h, %w.bias_0) : f32[2,4]
        }""", constants=bn_params(4))


def test_grouped_conv_transpose():
    check_pass("fold-batchnorm", """
        graph @g(%x: f32[1,4,3,3]) -> (%y: f32[1,4,4,4]) {
          %w = const f32[4,2,2,2]""" + BN_CONSTS + """
          %c = conv_transpose(%x, %w) {group=2} : f32[1,4,4,4]
          %y = batch_normalization(%c, %s, %b, %m, %v) : f32[1,4,4,4]
        }""", """
        graph @g(%x: f32[1,4,3,3]) -> (%y: f32[1,4,4,4]) {
          %w_0 = const f32[4,2,2,2]
          %w.bias_0 = const f32[4]
          %y = conv_transpose(%x, %w_0, %w.bias_0) {group=2} : f32[1,4,4,4]
        }""", constants=bn_params(4))


def test_batch_norm_of_an_input_becomes_mul_add_and_runtime_statistics_stay():
    check_pass("fold-batchnorm", """
        graph @g(%x: f32[2,4], %mean: f32[4]) -> (%y: f32[2,4], %z: f32[2,4]) {""" + BN_CONSTS + """
          %y = batch_normalization(%x, %s, %b, %m, %v) : f32[2,4]
          %z = batch_normalization(%x, %s, %b, %mean, %v) : f32[2,4]
        }""", """
        graph @g(%x: f32[2,4], %mean: f32[4]) -> (%y: f32[2,4], %z: f32[2,4]) {
          %s = const f32[4]
          %b = const f32[4]
          %v = const f32[4]
          %s.scale_0 = const f32[4]
          %b.shift_0 = const f32[4]
          %y.scaled0 = mul(%x, %s.scale_0) : f32[2,4]
          %y = add(%y.scaled0, %b.shift_0) : f32[2,4]
          %z = batch_normalization(%x, %s, %b, %mean, %v) : f32[2,4]
        }""", constants=bn_params(4))


@pytest.mark.zoo
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_zoo_models(zoo, name):
    graph, before, after = check_zoo_model(zoo(name), "fold-batchnorm")
    assert before["batch_normalization"] > 0 and "batch_normalization" not in after
    assert len(graph.nodes) == sum(before.values()) - before["batch_normalization"]


def test_two_batch_norms_in_a_row_both_fold():
    consts = {**bn_params(4), **bn_params(4, "k")}
    check_pass("fold-batchnorm", """
        graph @g(%x: f32[1,3,4,4]) -> (%y: f32[1,4,4,4]) {
          %w = const f32[4,3,1,1]""" + BN_CONSTS + """
          %ks = const f32[4]
          %kb = const f32[4]
          %km = const f32[4]
          %kv = const f32[4]
          %c = conv(%x, %w) : f32[1,4,4,4]
          %n = batch_normalization(%c, %s, %b, %m, %v) : f32[1,4,4,4]
          %y = batch_normalization(%n, %ks, %kb, %km, %kv) : f32[1,4,4,4]
        }""", """
        graph @g(%x: f32[1,3,4,4]) -> (%y: f32[1,4,4,4]) {
          %w_0_0 = const f32[4,3,1,1]
          %w_0.bias_0 = const f32[4]
          %y = conv(%x, %w_0_0, %w_0.bias_0) : f32[1,4,4,4]
        }""", constants=consts)
