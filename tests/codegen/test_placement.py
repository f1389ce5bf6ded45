"""Placement (pdc/codegen/placement.py) and the memory plan's spaces: a device target's nodes run in
device memory, the rest on the host, with explicit copies between; each space has its own arena."""
import numpy as np
import pytest

import pdc
from pdc.codegen.memory import plan_memory
from pdc.codegen.placement import place
from pdc.ir.interpreter import run_graph
from pdc.ir.parser import parse_graph
from pdc.ir.printer import print_graph
from pdc.targets import get_target

SOURCE = '''graph @g(%x: f32[2,8]) -> (%y: f32[2,8], %s: f32[2,8]) {
  %w = const f32[2,8]
  %a = add(%x, %w) : f32[2,8]
  %r = relu(%a) : f32[2,8]
  %s = softmax(%r) {axis=-1} : f32[2,8]
  %y = mul(%s, %r) : f32[2,8]
}
'''

# add, relu and mul run on the device; softmax has no device kernel here
PLACED = '''graph @g(%x: f32[2,8]) -> (%y: f32[2,8], %s: f32[2,8]) {
  %w = const f32[2,8]
  %x_device_0 = copy(%x) {to="device"} : f32[2,8]
  %a = add(%x_device_0, %w) : f32[2,8]
  %r = relu(%a) : f32[2,8]
  %r_host_0 = copy(%r) {to="host"} : f32[2,8]
  %s = softmax(%r_host_0) {axis=-1} : f32[2,8]
  %s_device_0 = copy(%s) {to="device"} : f32[2,8]
  %y_device_0 = mul(%s_device_0, %r) : f32[2,8]
  %y = copy(%y_device_0) {to="host"} : f32[2,8]
}
'''


def device_space(node) -> str:
    return "host" if node.op == "softmax" else "device"


def graph():
    w = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    return parse_graph(SOURCE, {"w": w})


def test_placement_copies_values_across_spaces():
    """One copy per (value, space) where a reader runs elsewhere than the writer; a graph output
    written on the device is copied into the caller's buffer; the constant needs none."""
    g = graph()
    before = print_graph(g)
    placed, spaces = place(g, device_space, ("host", "device"))
    assert print_graph(g) == before  # the input graph is left alone
    assert print_graph(placed) == PLACED
    by_name = {v.name: s for v, s in spaces.items()}
    assert by_name == {"x_device_0": "device", "a": "device", "r": "device", "r_host_0": "host", "s": "host",
                       "s_device_0": "device", "y_device_0": "device", "y": "host"}
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    want, got = run_graph(g, {"x": x}), run_graph(placed, {"x": x})
    for name in ("y", "s"):
        np.testing.assert_array_equal(got[name], want[name])


def test_host_targets_place_nothing():
    g = graph()
    placed, spaces = place(g, get_target("x86").space_of, get_target("x86").memory_spaces)
    assert placed is g and set(spaces.values()) == {"host"}


def test_each_space_has_its_own_arena():
    """Device values are planned in the device arena, host values in the host one; within a space
    no two values live at once in the same bytes; a kernel's scratch is in its node's space."""
    placed, spaces = place(graph(), device_space, ("host", "device"))
    plan = plan_memory(placed, spaces=spaces, scratch={2: 100})  # node 2: the relu, on the device
    assert set(plan.arenas) == {"host", "device"} and plan.arena_bytes == plan.arenas["host"]
    tensor = 2 * 8 * 4
    # host: r_host_0 and s (s is a graph output: the caller's); device: x, a/r in place, s, y
    assert plan.arenas["host"] == 64
    assert plan.arenas["device"] >= 3 * tensor and plan.scratch[2] + 100 <= plan.arenas["device"]
    for v, off in plan.offsets.items():
        space = plan.space.get(v, "host")
        assert space == spaces[v] and off + v.type.nbytes <= plan.arenas[space]


def test_a_node_placed_outside_the_targets_spaces_is_an_error():
    with pytest.raises(pdc.PdcError, match=r"placement: node relu -> %r placed in 'dsp', not one of the target's "
                                           r"memory spaces \(host, device\)"):
        place(graph(), lambda n: "dsp" if n.op == "relu" else "host", ("host", "device"))
