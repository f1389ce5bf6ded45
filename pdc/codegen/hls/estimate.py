"""Resources and latency of a planned design, from a documented model (no synthesis tool involved).

Per layer with multiplications (conv, dense), M multiplications per output pixel and reuse factor R:
- multipliers: P = ceil(Z / R) work in parallel, each used R times per output pixel (Z: the weights that
  are not zero in their fixed-point type; a zero weight needs no multiplier);
- DSP: a multiplier whose narrower operand has fewer than 10 bits is built from LUTs (a x b LUTs);
  otherwise it takes ceil(a / 27) * ceil(b / 18) DSP slices (a DSP48's 27 x 18 multiplier, a >= b);
- weights: with R = 1 they are constants inside the multipliers (no memory); with R > 1 a ROM of R
  words of P weights each: BRAM_18K blocks = ceil(P * w_bits / 36) * ceil(R / 512) (a block is 512 x 36),
  or LUT-RAM (w_bits * P * R / 64 LUTs) when the ROM holds under 1,024 bits; on a part with UltraRAM a
  ROM over 36 BRAM blocks goes to URAM (4,096 x 72 per block);
- adders: P accumulators of the accumulator's width: that many LUTs and flip-flops each;
- line buffers (conv, pooling): (KHD - 1) rows of the padded width, C values each: BRAM_18K blocks =
  ceil(bits / 18,432), LUT-RAM under 1,024 bits.
Softmax: its two exp tables as memory, two multipliers per channel, a 40-bit divider (1,600 LUTs and
flip-flops, 40 stages). Streams between layers are FIFOs of depth 2 in registers (2 x pixel bits flip-flops).
Timing: a layer starts an output pixel every R cycles once the inputs it needs have arrived; its latency
is max(input pixels, output pixels x R) + a pipeline depth of log2(M) + 3 cycles; the design's initiation
interval is the slowest layer's and its latency the sum (an upper bound: the dataflow overlaps layers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .plan import Design, Layer

BRAM18_BITS = 18432
URAM_BITS = 4096 * 72


@dataclass(frozen=True)
class Part:
    """An FPGA part's resources (Xilinx data sheets)."""
    name: str
    dsp: int
    bram18: int
    uram: int
    lut: int
    ff: int

    @property
    def on_chip_bits(self) -> int:
        return self.bram18 * BRAM18_BITS + self.uram * URAM_BITS


PARTS = {p.name: p for p in (
    Part("xc7z020clg400-1", 220, 280, 0, 53200, 106400),         # PYNQ-Z2 (Zynq-7020)
    Part("xczu7ev-ffvc1156-2-e", 1728, 624, 96, 230400, 460800),  # ZCU104 (Zynq UltraScale+ ZU7EV)
    Part("xczu9eg-ffvb1156-2-e", 2520, 1824, 0, 274080, 548160),  # ZCU102 (ZU9EG)
    Part("xcu250-figd2104-2L-e", 12288, 5376, 1280, 1728000, 3456000),  # Alveo U250
    Part("xcvu13p-flga2577-2-e", 12288, 5376, 1280, 1728000, 3456000),  # Virtex UltraScale+ VU13P
)}


@dataclass
class Usage:
    dsp: int = 0
    bram18: int = 0
    uram: int = 0
    lut: int = 0
    ff: int = 0

    def __add__(self, o: "Usage") -> "Usage":
        return Usage(self.dsp + o.dsp, self.bram18 + o.bram18, self.uram + o.uram, self.lut + o.lut, self.ff + o.ff)


@dataclass
class LayerEstimate:
    layer: str
    kind: str
    usage: Usage
    interval: int  # cycles between successive inputs this layer can take
    latency: int  # cycles from its first input to its last output
    reuse: int


@dataclass
class Estimate:
    layers: list = field(default_factory=list)
    clock_mhz: float = 200.0

    @property
    def total(self) -> Usage:
        return sum((e.usage for e in self.layers), Usage())

    @property
    def interval(self) -> int:
        return max((e.interval for e in self.layers), default=1)

    @property
    def latency(self) -> int:
        return sum(e.latency for e in self.layers)

    def ns(self, cycles: int) -> float:
        return cycles * 1000.0 / self.clock_mhz

    def over(self, part: Part) -> list[tuple[str, int, int]]:
        """(resource, used, available) for each resource the design needs more of than the part has."""
        t = self.total
        pairs = (("DSP", t.dsp, part.dsp), ("BRAM_18K", t.bram18, part.bram18), ("URAM", t.uram, part.uram),
                 ("LUT", t.lut, part.lut), ("FF", t.ff, part.ff))
        return [(k, used, have) for k, used, have in pairs if used > have]

    def as_dict(self, part: Part) -> dict:
        t = self.total
        return {
            "model": "pdc.codegen.hls.estimate (documented there; not a synthesis result)",
            "part": part.name, "clock_mhz": self.clock_mhz,
            "total": vars(t) | {"interval_cycles": self.interval, "latency_cycles": self.latency,
                                "latency_ns": round(self.ns(self.latency), 1)},
            "available": {"dsp": part.dsp, "bram18": part.bram18, "uram": part.uram, "lut": part.lut, "ff": part.ff},
            "layers": [{"layer": e.layer, "kind": e.kind, "reuse": e.reuse, **vars(e.usage),
                        "interval_cycles": e.interval, "latency_cycles": e.latency} for e in self.layers],
        }

    def table(self, part: Part) -> list[str]:
        return table_of(self.as_dict(part))


def table_of(est: dict) -> list[str]:
    """The estimate (as_dict's form, as manifest.json keeps it) as a table, one line per layer."""
    lines = [f"{'layer':<28} {'kind':<10} {'R':>4} {'DSP':>7} {'BRAM18':>7} {'URAM':>5} {'LUT':>9} {'FF':>9} "
             f"{'II':>8} {'latency':>9}"]
    rows = est["layers"] + [dict(est["total"], layer="total", kind="", reuse="")]
    for e in rows:
        lines.append(f"{e['layer'][:28]:<28} {e['kind']:<10} {e['reuse']:>4} {e['dsp']:>7,} {e['bram18']:>7,} "
                     f"{e['uram']:>5,} {e['lut']:>9,} {e['ff']:>9,} {e['interval_cycles']:>8,} {e['latency_cycles']:>9,}")
    a = est["available"]
    lines.append(f"{'available (' + est['part'] + ')':<44} {a['dsp']:>7,} {a['bram18']:>7,} {a['uram']:>5,} "
                 f"{a['lut']:>9,} {a['ff']:>9,}")
    t = est["total"]
    lines.append(f"latency {t['latency_cycles']:,} cycles = {t['latency_ns']:,} ns at {est['clock_mhz']:g} MHz; "
                 f"a new input every {t['interval_cycles']:,} cycles")
    return lines


def multiplier(a: int, b: int) -> Usage:
    """One a x b bit multiplier."""
    a, b = max(a, b), min(a, b)
    if b < 10:
        return Usage(lut=a * b)
    return Usage(dsp=math.ceil(a / 27) * math.ceil(b / 18))


def memory(bits: int, part: Part) -> Usage:
    """A buffer of `bits` bits."""
    if bits < 1024:
        return Usage(lut=math.ceil(bits / 64))
    blocks = math.ceil(bits / BRAM18_BITS)
    if part.uram and blocks > 36:
        return Usage(uram=math.ceil(bits / URAM_BITS))
    return Usage(bram18=blocks)


def rom(word_bits: int, depth: int, part: Part) -> Usage:
    """A ROM of `depth` words of `word_bits` bits, one word read per cycle."""
    if word_bits * depth < 1024:
        return Usage(lut=math.ceil(word_bits * depth / 64))
    blocks = math.ceil(word_bits / 36) * math.ceil(depth / 512)
    if part.uram and blocks > 36:
        return Usage(uram=math.ceil(word_bits / 72) * math.ceil(depth / 4096))
    return Usage(bram18=blocks)


def layer_estimate(layer: Layer, part: Part) -> LayerEstimate:
    u = Usage()
    r = max(1, layer.reuse)
    out, in_s = layer.outputs[0], layer.inputs[0]
    depth = 3
    for s in layer.outputs:  # its output FIFO: depth 2
        u.ff += 2 * s.channels * s.type.width
    if layer.kind in ("conv", "dense"):
        m = layer.mults_per_step
        p = math.ceil(int(np.count_nonzero(layer.weight_t.from_float(layer.weights))) / r)  # zeros need none
        mult = multiplier(in_s.type.width, layer.weight_t.width)
        u += Usage(dsp=mult.dsp * p, lut=mult.lut * p + p * layer.acc_t.width, ff=p * layer.acc_t.width)
        if r > 1:
            u += rom(p * layer.weight_t.width, r, part)
        depth += math.ceil(math.log2(max(m, 2)))
    if layer.kind in ("conv", "max_pool", "avg_pool"):
        (kh, kw), dh = layer.attrs["kernel"], layer.attrs["dilations"][0]
        c, _, w = in_s.image
        pads = layer.attrs["pads"]
        if kh > 1:
            u += memory((kh - 1) * dh * (w + pads[1] + pads[3]) * c * in_s.type.width, part)
        u.lut += c * in_s.type.width * kh * kw // 4  # the window's registers and muxes
    if layer.kind == "activation" and layer.activation == "table":
        u += memory((1 << min(in_s.type.width, 10)) * out.type.width, part)
    if layer.kind == "softmax":  # two exp tables, 2 C multipliers (18 x 18, 19 x 18 bits), C adders, a divider
        from .reference import EXP_ENTRIES, Q_FRAC
        u += memory(2 * EXP_ENTRIES * 18, part)
        mults = multiplier(18, 18).dsp + multiplier(Q_FRAC + 1, 18).dsp
        u += Usage(dsp=out.channels * mults, lut=out.channels * 24 + 40 * 40, ff=40 * 40)
        depth += 40  # the divider's stages
    if layer.kind in ("add", "concat", "activation", "clone"):
        u.lut += out.channels * out.type.width
    steps = r if layer.kind == "dense" else out.pixels * (r if layer.kind == "conv" else 1)
    interval = max(in_s.pixels, steps)
    return LayerEstimate(layer.name, layer.kind, u, interval, interval + depth, r)


def estimate(design: Design, part: Part, clock_mhz: float) -> Estimate:
    return Estimate([layer_estimate(layer, part) for layer in design.layers], clock_mhz)


def weight_bits(design: Design) -> int:
    return sum(layer.weights.size * layer.weight_t.width + layer.bias.size * layer.bias_t.width
               for layer in design.layers if layer.weights is not None)
