import numpy as np
import pytest

from pdc.ir.interpreter import run_graph
from pdc.ir.registry import all_ops
from tolerances import KERNEL

from .pass_checks import check_zoo_model
from .util import check_pass, graph_from_text, random_feeds

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


# PyTorch's export of scaled_dot_product_attention (transformers' BERT): the square root of the scale on
# Q and on K^T (split and transposed by one Transpose), a bool mask made -inf, and NaN probabilities
# (a row masked out entirely) zeroed before P V
TORCH_SDPA = """
    graph @g(%q: f32[1,6,8], %k: f32[1,6,8], %v: f32[1,6,8], %m: bool[1,1,6,6]) -> (%y: f32[1,6,8]) {
      %split = const i64[4]
      %merge = const i64[3]
      %c = const f32[]
      %zero = const f32[]
      %ninf = const f32[]
      %qr = reshape(%q, %split) {allowzero=0} : f32[1,6,2,4]
      %qt = transpose(%qr) {perm=[0, 2, 1, 3]} : f32[1,2,6,4]
      %kr = reshape(%k, %split) {allowzero=0} : f32[1,6,2,4]
      %kt = transpose(%kr) {perm=[0, 2, 3, 1]} : f32[1,2,4,6]
      %vr = reshape(%v, %split) {allowzero=0} : f32[1,6,2,4]
      %vt = transpose(%vr) {perm=[0, 2, 1, 3]} : f32[1,2,6,4]
      %qs = mul(%qt, %c) : f32[1,2,6,4]
      %ks = mul(%kt, %c) : f32[1,2,4,6]
      %sc = matmul(%qs, %ks) : f32[1,2,6,6]
      %bias = where(%m, %zero, %ninf) : f32[1,1,6,6]
      %sb = add(%sc, %bias) : f32[1,2,6,6]
      %p = softmax(%sb) {axis=-1} : f32[1,2,6,6]
      %nan = is_nan(%p) : bool[1,2,6,6]
      %pz = where(%nan, %zero, %p) : f32[1,2,6,6]
      %o = matmul(%pz, %vt) : f32[1,2,6,4]
      %ot = transpose(%o) {perm=[0, 2, 1, 3]} : f32[1,6,2,4]
      %y = reshape(%ot, %merge) {allowzero=0} : f32[1,6,8]
    }"""
TORCH_CONSTS = {"split": [1, 6, 2, 4], "merge": [1, 6, 8], "c": 0.5, "zero": 0.0, "ninf": -float("inf")}


@pytest.mark.parametrize("op", ["fused_attention", "auto"])
def test_fuses_the_torch_export_with_its_nan_to_zero(op):
    """Random masks leave some rows with no key (NaN probabilities, zero outputs): the reference
    interpreter runs both graphs on them. ONNX Attention does not zero NaN probabilities, so auto
    takes fused_attention."""
    fused = check_pass(f"fuse-attention{{op={op}}}", TORCH_SDPA, """
        graph @g(%q: f32[1,6,8], %k: f32[1,6,8], %v: f32[1,6,8], %m: bool[1,1,6,6]) -> (%y: f32[1,6,8]) {
          %zero = const f32[]
          %ninf = const f32[]
          %bias = where(%m, %zero, %ninf) : f32[1,1,6,6]
          %y = fused_attention(%q, %k, %v, %bias) {nan_to_zero=1, num_heads=2, scale=0.25} : f32[1,6,8]
        }""", TORCH_CONSTS)
    feeds = random_feeds(fused)
    feeds["m"] = np.ones((1, 1, 6, 6), bool)
    feeds["m"][0, 0, 2] = False  # query 2 sees no key
    want = run_graph(graph_from_text(TORCH_SDPA, TORCH_CONSTS), feeds)["y"]
    got = run_graph(fused, feeds)["y"]
    assert not np.isnan(want).any() and (want[0, 2] == 0).all() and (want[0, 1] != 0).all()
    KERNEL.check(got, want)


def test_torch_export_without_the_nan_guard_is_plain_attention():
    text = TORCH_SDPA.replace("%o = matmul(%pz, %vt)", "%o = matmul(%p, %vt)")
    text = "\n".join(line for line in text.splitlines() if "%nan" not in line and "%pz" not in line)
    check_pass("fuse-attention{op=fused_attention}", text, """
        graph @g(%q: f32[1,6,8], %k: f32[1,6,8], %v: f32[1,6,8], %m: bool[1,1,6,6]) -> (%y: f32[1,6,8]) {
          %zero = const f32[]
          %ninf = const f32[]
          %bias = where(%m, %zero, %ninf) : f32[1,1,6,6]
          %y = fused_attention(%q, %k, %v, %bias) {num_heads=2, scale=0.25} : f32[1,6,8]
        }""", TORCH_CONSTS)


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
