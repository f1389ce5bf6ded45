import pytest

from pdc.ir.registry import all_ops

from .pass_checks import check_zoo_model
from .util import check_pass

# The head-split attention block paddle2onnx writes for nn.MultiHeadAttention (2 heads of 4),
# Paddle's scale op on Q (a Mul and an Add of zero) and identities included.
PADDLE_BLOCK = """
    graph @g(%q: f32[1,6,8], %k: f32[1,6,8], %v: f32[1,6,8]) -> (%y: f32[1,6,8]) {
      %split = const i64[4]
      %merge = const i64[3]
      %s = const f32[1]
      %zero = const f32[]
      %qr = reshape(%q, %split) {allowzero=0} : f32[1,6,2,4]
      %qt = transpose(%qr) {perm=[0, 2, 1, 3]} : f32[1,2,6,4]
      %kr = reshape(%k, %split) {allowzero=0} : f32[1,6,2,4]
      %kt = transpose(%kr) {perm=[0, 2, 1, 3]} : f32[1,2,6,4]
      %vr = reshape(%v, %split) {allowzero=0} : f32[1,6,2,4]
      %vt = transpose(%vr) {perm=[0, 2, 1, 3]} : f32[1,2,6,4]
      %qi = identity(%qt) : f32[1,2,6,4]
      %qm = mul(%qi, %s) : f32[1,2,6,4]
      %qa = add(%qm, %zero) : f32[1,2,6,4]
      %ktt = transpose(%kt) {perm=[0, 1, 3, 2]} : f32[1,2,4,6]
      %sc = matmul(%qa, %ktt) : f32[1,2,6,6]
      %p = softmax(%sc) {axis=-1} : f32[1,2,6,6]
      %o = matmul(%p, %vt) : f32[1,2,6,4]
      %ot = transpose(%o) {perm=[0, 2, 1, 3]} : f32[1,6,2,4]
      %y = reshape(%ot, %merge) {allowzero=0} : f32[1,6,8]
    }"""
PADDLE_CONSTS = {"split": [1, 6, 2, 4], "merge": [1, 6, 8], "s": [0.5], "zero": 0.0}


def test_fuses_the_paddle_block_with_its_head_split_and_merge():
    check_pass("fuse-attention{op=fused_attention}", PADDLE_BLOCK, """
        graph @g(%q: f32[1,6,8], %k: f32[1,6,8], %v: f32[1,6,8]) -> (%y: f32[1,6,8]) {
          %y = fused_attention(%q, %k, %v) {num_heads=2, scale=0.5} : f32[1,6,8]
        }""", PADDLE_CONSTS)


def test_targets_onnx_attention():
    check_pass("fuse-attention", PADDLE_BLOCK, """
        graph @g(%q: f32[1,6,8], %k: f32[1,6,8], %v: f32[1,6,8]) -> (%y: f32[1,6,8]) {
          %y = attention(%q, %k, %v) {kv_num_heads=2, q_num_heads=2, scale=0.5} : f32[1,6,8]
        }""", PADDLE_CONSTS)


def test_fuses_4d_attention_with_a_scale_on_the_scores_and_a_mask():
    check_pass("fuse-attention{op=fused_attention}", """
        graph @g(%q: f32[2,3,5,4], %k: f32[2,3,7,4], %v: f32[2,3,7,6], %m: f32[2,1,5,7]) -> (%y: f32[2,3,5,6]) {
          %d = const f32[]
          %kt = transpose(%k) {perm=[0, 1, 3, 2]} : f32[2,3,4,7]
          %s = matmul(%q, %kt) : f32[2,3,5,7]
          %sd = div(%s, %d) : f32[2,3,5,7]
          %sm = add(%m, %sd) : f32[2,3,5,7]
          %p = softmax(%sm) {axis=3} : f32[2,3,5,7]
          %y = matmul(%p, %v) : f32[2,3,5,6]
        }""", """
        graph @g(%q: f32[2,3,5,4], %k: f32[2,3,7,4], %v: f32[2,3,7,6], %m: f32[2,1,5,7]) -> (%y: f32[2,3,5,6]) {
          %y = fused_attention(%q, %k, %v, %m) {num_heads=0, scale=0.5} : f32[2,3,5,6]
        }""", {"d": 2.0})


def test_a_head_split_with_another_reader_keeps_the_4d_form():
    # %kt (K split into heads) is also a graph output: the 3-D form cannot absorb it
    check_pass("fuse-attention{op=fused_attention}", """
        graph @g(%q: f32[1,2,6,4], %k: f32[1,6,8], %v: f32[1,2,6,4]) -> (%y: f32[1,2,6,4], %kt: f32[1,2,6,4]) {
          %split = const i64[4]
          %kr = reshape(%k, %split) {allowzero=0} : f32[1,6,2,4]
          %kt = transpose(%kr) {perm=[0, 2, 1, 3]} : f32[1,2,6,4]
          %ktt = transpose(%kt) {perm=[0, 1, 3, 2]} : f32[1,2,4,6]
          %sc = matmul(%q, %ktt) : f32[1,2,6,6]
          %p = softmax(%sc) {axis=-1} : f32[1,2,6,6]
          %y = matmul(%p, %v) : f32[1,2,6,4]
        }""", """
        graph @g(%q: f32[1,2,6,4], %k: f32[1,6,8], %v: f32[1,2,6,4]) -> (%y: f32[1,2,6,4], %kt: f32[1,2,6,4]) {
          %split = const i64[4]
          %kr = reshape(%k, %split) {allowzero=0} : f32[1,6,2,4]
          %kt = transpose(%kr) {perm=[0, 2, 1, 3]} : f32[1,2,6,4]
          %y = fused_attention(%q, %kt, %v) {num_heads=0, scale=1.0} : f32[1,2,6,4]
        }""", {"split": [1, 6, 2, 4]})


NOT_ATTENTION = {  # the lines between Q K^T (%sc) and the softmax's input (%x), extra graph outputs
    "softmax over another axis": ("%x = identity(%sc) : f32[1,2,6,6]", "", 2),
    "scores read elsewhere": ("%x = identity(%sc) : f32[1,2,6,6]", ", %sc: f32[1,2,6,6]", -1),
    "a scale that is not constant": ("%x = mul(%sc, %w) : f32[1,2,6,6]", "", -1),
    "a mask that grows the scores": ("%x = add(%sc, %w) : f32[1,2,6,6]", "", -1),
}


@pytest.mark.parametrize("case", NOT_ATTENTION)
def test_does_not_fire(case):
    middle, extra_out, axis = NOT_ATTENTION[case]
    w = "f32[2,2,6,6]" if "grows" in case else "f32[1,2,6,6]"
    scores = "f32[2,2,6,6]" if "grows" in case else "f32[1,2,6,6]"
    middle = middle.replace("f32[1,2,6,6]", scores)
    text = f"""
        graph @g(%q: f32[1,2,6,4], %k: f32[1,2,6,4], %v: f32[1,2,6,4], %w: {w}) -> (%y: {scores[:-2]}4]{extra_out}) {{
          %kt = transpose(%k) {{perm=[0, 1, 3, 2]}} : f32[1,2,4,6]
          %sc = matmul(%q, %kt) : f32[1,2,6,6]
          {middle}
          %p = softmax(%x) {{axis={axis}}} : {scores}
          %y = matmul(%p, %v) : {scores[:-2]}4]
        }}"""
    check_pass("fuse-attention{op=fused_attention}", text, text)


@pytest.mark.zoo
def test_transformer_encoder(zoo):
    g, before, after = check_zoo_model(zoo("transformer_encoder"), "fuse-attention")
    op = "attention" if "attention" in all_ops() else "fused_attention"
    assert after[op] == 2 and after["softmax"] == 0 and after["transpose"] == 0
    assert all(n.attrs.get("scale") == pytest.approx(0.25) for n in g.nodes if n.op == op)
    g, _, after = check_zoo_model(zoo("transformer_encoder"), "fuse-attention{op=fused_attention}")
    assert after["fused_attention"] == 2
