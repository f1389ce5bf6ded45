"""An FPGA bundle from an optimized graph: plan the layers, type them, check the estimate against the
part, write the HLS C++, its testbench, Makefile and Vitis HLS script."""
from __future__ import annotations

import math
from importlib import resources

import numpy as np

from ...ir.errors import PdcError
from ..c_renderer import Bundle
from ..memory import MemoryPlan
from . import estimate as est
from . import precision
from .plan import Design, plan
from .writer import Writer


class HlsRenderer:
    def __init__(self, target):
        self.target = target

    def render(self, graph, name: str, weights: str, config) -> Bundle:
        t = self.target
        design, choice = typed_design(graph, t)
        part = t.part
        estimate = est.estimate(design, part, t.clock_mhz)
        check_fit(design, estimate, part, t)
        files = Writer(design, name).files()
        files["pdc_hls.h"] = resources.files("pdc").joinpath("runtime/hls/pdc_hls.h").read_text()
        files["Makefile"] = makefile(name, t.cflags)
        files["build_prj.tcl"] = project_script(name, part.name, t.clock_mhz)
        files["ubsan.supp"] = UBSAN_SUPPRESSIONS
        sample = np.zeros(sum(s.size for s in design.inputs), np.float32)
        data = {k: v.encode() for k, v in files.items()}
        data["tb_in.bin"] = sample.tobytes()
        how = (f"chosen from {choice.samples} calibration samples: {choice.width} bits ({choice.agreement:.1%} "
               f"agreement with float, {choice.target:.1%} asked)" if choice.how == "calibrated" else "given")
        notes = [f"precision {how}:"] + [f"  {line}" for line in precision.summary(design)]
        notes += ["estimate (pdc's model, see pdc/codegen/hls/estimate.py):"] + \
            [f"  {line}" for line in estimate.table(part)]
        naive = sum(v.type.nbytes for n in graph.nodes for v in n.outputs if v not in graph.outputs)
        bundle = Bundle(name, files=data, kernel_paths=[None] * len(graph.nodes),
                        kernel_families=["hls"] * len(graph.nodes),
                        plan=MemoryPlan({}, {}, 0, naive), graph=graph, notes=notes)
        bundle.manifest = {
            "weight_bytes": math.ceil(est.weight_bits(design) / 8),
            "fpga": {
                "part": part.name, "clock_mhz": t.clock_mhz, "reuse_factor": t.reuse or 1,
                "precision": {"how": choice.how, "width": choice.width, "agreement": choice.agreement,
                              "target_agreement": choice.target, "layers": layer_types(design)},
                "estimate": estimate.as_dict(part),
            },
        }
        return bundle


def typed_design(graph, target) -> tuple[Design, "precision.Choice"]:
    """The optimized graph's layers with their types and reuse factors, for an FPGA target with its options."""
    design = plan(graph, target.name)
    choice = precision.assign(design, graph, target.precision_spec, target.calibration, target.agreement)
    set_reuse(design, target.reuse or 1)
    return design, choice


def set_reuse(design: Design, reuse: int) -> None:
    """The reuse factor of each multiplying layer (a per-layer file's, else `reuse`; at most its
    multiplications per output pixel)."""
    for layer in design.layers:
        r = layer.reuse_asked or reuse
        layer.reuse = min(r, layer.mults_per_step) if layer.kind in ("conv", "dense") else 1


def check_fit(design: Design, estimate, part, target) -> None:
    over = estimate.over(part)
    if not over:
        return
    what = ", ".join(f"{k} {used:,} of {have:,} ({used / have:.1f}x)" if have else f"{k} {used:,} of 0"
                     for k, used, have in over)
    where = f"{target.name}: the design does not fit {part.name}: {what}"
    bits = est.weight_bits(design)
    if bits > part.on_chip_bits:
        raise PdcError(f"{where}; no reuse factor fits: the weights alone are {bits / 1e6:.1f} Mbit and the part "
                       f"holds {part.on_chip_bits / 1e6:.1f} Mbit on chip ({bits / part.on_chip_bits:.1f}x)")
    current = target.reuse or 1
    largest = max((layer.mults_per_step for layer in design.layers if layer.kind in ("conv", "dense")), default=1)
    r = current * 2
    while r <= 2 * largest:
        set_reuse(design, r)
        if not est.estimate(design, part, target.clock_mhz).over(part):
            raise PdcError(f"{where}; --reuse-factor {r} fits")
        r *= 2
    raise PdcError(f"{where}; no reuse factor fits (even one multiplier per layer): pick a larger part")


def layer_types(design: Design) -> list[dict]:
    out = []
    for layer in design.layers:
        if layer.kind == "clone":
            continue
        entry = {"layer": layer.name, "kind": layer.kind, "result": str(layer.outputs[0].type)}
        for key in ("weight_t", "bias_t", "acc_t"):
            if getattr(layer, key) is not None:
                entry[key[:-2] if key != "acc_t" else "accum"] = str(getattr(layer, key))
        out.append(entry)
    for i, s in enumerate(design.inputs):
        out.insert(i, {"layer": s.value.name, "kind": "input", "result": str(s.type)})
    return out


# the ap_types headers' own undefined behaviour: ap_private's default constructor masks its unset value
# with shifts of negative numbers (every ap_fixed constructed); nothing of pdc's code is suppressed
UBSAN_SUPPRESSIONS = """# UndefinedBehaviorSanitizer suppressions for the C simulation (make sanitize): the ap_types
# headers shift negative and unset values in ap_private (clearUnusedBits); pdc's code is not covered
shift-base:ap_private.h
"""


def makefile(name: str, flags: list) -> str:
    return f"""# Generated by pdc: C simulation of {name} (g++ and the ap_types headers: AP_TYPES=dir, e.g. hls4ml's
# templates/vivado/ap_types). `make run` runs the testbench on tb_in.bin. Synthesis: vitis_hls -f build_prj.tcl
AP_TYPES ?= $(error set AP_TYPES to the folder holding ap_fixed.h and hls_stream.h)
CXX ?= g++
CXXFLAGS ?= {" ".join(flags)}

{name}_csim: {name}.cpp {name}_tb.cpp {name}.h {name}_weights.h pdc_hls.h
\t$(CXX) $(CXXFLAGS) -isystem $(AP_TYPES) -I. -o $@ {name}.cpp {name}_tb.cpp

run: {name}_csim
\t./{name}_csim tb_in.bin tb_out.bin

# the testbench under AddressSanitizer and UndefinedBehaviorSanitizer (any report stops it)
sanitize: {name}.cpp {name}_tb.cpp {name}.h {name}_weights.h pdc_hls.h
\t$(CXX) $(CXXFLAGS) -fsanitize=address,undefined -isystem $(AP_TYPES) -I. -o {name}_csim_san {name}.cpp {name}_tb.cpp
\tUBSAN_OPTIONS=suppressions=ubsan.supp:halt_on_error=1:print_stacktrace=1 ./{name}_csim_san tb_in.bin tb_out.bin

.PHONY: run sanitize
"""


def project_script(name: str, part: str, clock_mhz: float) -> str:
    return f"""# Generated by pdc: the Vitis HLS project of {name}. Run with `vitis_hls -f build_prj.tcl`
# (C simulation, synthesis, C/RTL co-simulation, and the IP for Vivado's catalog).
open_project -reset {name}_prj
set_top {name}
add_files {name}.cpp -cflags "-std=c++14 -I."
add_files -tb {name}_tb.cpp -cflags "-std=c++14 -I."
add_files -tb tb_in.bin
open_solution -reset solution1 -flow_target vivado
set_part {{{part}}}
create_clock -period {1000.0 / clock_mhz:.3f} -name default
csim_design -argv "tb_in.bin tb_out.bin"
csynth_design
cosim_design -argv "tb_in.bin tb_out.bin"
export_design -format ip_catalog
exit
"""
