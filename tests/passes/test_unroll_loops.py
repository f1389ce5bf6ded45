"""unroll-loops: IR text before and after, outputs kept (util.check_pass runs both on the interpreter)."""
import numpy as np

from .util import check_pass, graph_from_text, run_passes
from pdc.ir.printer import print_graph

LOOP = """
    graph @g(%h0: f32[2], %w: f32[2]) -> (%h: f32[2], %hs: f32[3,2]) {
      %m = const i64[]
      %h, %hs = loop(%m, _, %h0, %w) {body=graph @body(%i: i64[], %c: bool[], %h_in: f32[2], %w_in: f32[2]) -> (%c: bool[], %h_out: f32[2], %h_out: f32[2]) {
        %a = mul(%h_in, %w_in) : f32[2]
        %h_out = tanh(%a) : f32[2]
      }, captures=1} : f32[2], f32[3,2]
    }"""


def test_a_constant_trip_count_unrolls():
    check_pass("unroll-loops", LOOP, """
        graph @g(%h0: f32[2], %w: f32[2]) -> (%h: f32[2], %hs: f32[3,2]) {
          %hs_axis_0 = const i64[1]
          %it0_a_0 = mul(%h0, %w) : f32[2]
          %it0_h_out_0 = tanh(%it0_a_0) : f32[2]
          %it1_a_0 = mul(%it0_h_out_0, %w) : f32[2]
          %it1_h_out_0 = tanh(%it1_a_0) : f32[2]
          %it2_a_0 = mul(%it1_h_out_0, %w) : f32[2]
          %h = tanh(%it2_a_0) : f32[2]
          %hs_0 = unsqueeze(%it0_h_out_0, %hs_axis_0) : f32[1,2]
          %hs_1 = unsqueeze(%it1_h_out_0, %hs_axis_0) : f32[1,2]
          %hs_2 = unsqueeze(%h, %hs_axis_0) : f32[1,2]
          %hs = concat(%hs_0, %hs_1, %hs_2) {axis=0} : f32[3,2]
        }""", constants={"m": np.array(3, np.int64)})


def test_too_many_trips_stay_a_loop():
    g = graph_from_text(LOOP, {"m": np.array(3, np.int64)})
    before = print_graph(g)
    run_passes(g, "unroll-loops{max-trips=2}")
    assert print_graph(g) == before


def test_a_scan_unrolls_into_gathers():
    check_pass("unroll-loops", """
        graph @g(%s0: f32[2], %x: f32[2,3]) -> (%s: f32[2], %ys: f32[2,3]) {
          %s, %ys = scan(%s0, %x) {body=graph @body(%s_in: f32[2], %x_t: f32[2]) -> (%s_out: f32[2], %s_out: f32[2]) {
            %s_out = add(%s_in, %x_t) : f32[2]
          }, num_scan_inputs=1, scan_input_axes=[1], scan_input_directions=[1], scan_output_axes=[1]} : f32[2], f32[2,3]
        }""", """
        graph @g(%s0: f32[2], %x: f32[2,3]) -> (%s: f32[2], %ys: f32[2,3]) {
          %step_0 = const i64[]
          %step_1 = const i64[]
          %step_2 = const i64[]
          %ys_axis_0 = const i64[1]
          %x_t0_0 = gather(%x, %step_0) {axis=1} : f32[2]
          %step0_s_out_0 = add(%s0, %x_t0_0) : f32[2]
          %x_t1_0 = gather(%x, %step_1) {axis=1} : f32[2]
          %step1_s_out_0 = add(%step0_s_out_0, %x_t1_0) : f32[2]
          %x_t2_0 = gather(%x, %step_2) {axis=1} : f32[2]
          %s = add(%step1_s_out_0, %x_t2_0) : f32[2]
          %ys_0 = unsqueeze(%step0_s_out_0, %ys_axis_0) : f32[2,1]
          %ys_1 = unsqueeze(%step1_s_out_0, %ys_axis_0) : f32[2,1]
          %ys_2 = unsqueeze(%s, %ys_axis_0) : f32[2,1]
          %ys = concat(%ys_0, %ys_1, %ys_2) {axis=1} : f32[2,3]
        }""")


def test_zero_trips_give_the_initial_values_and_empty_stacks():
    check_pass("unroll-loops", LOOP.replace("f32[3,2]", "f32[0,2]"), """
        graph @g(%h0: f32[2], %w: f32[2]) -> (%h: f32[2], %hs: f32[0,2]) {
          %hs_0 = const f32[0,2]
          %h = identity(%h0) : f32[2]
          %hs = identity(%hs_0) : f32[0,2]
        }""", constants={"m": np.array(0, np.int64)})
