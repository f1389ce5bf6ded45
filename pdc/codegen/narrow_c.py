"""C conversions of the narrow element types (float8, float4, 4- and 2-bit integers: dtypes.NARROW).

A narrow tensor holds one element per byte, laid out as ml_dtypes lays it out (what NumPy callers
pass): a float8 / float4 code in the low bits, a 4- or 2-bit integer as its two's complement low
bits. Arithmetic never runs on them: Cast, QuantizeLinear and DequantizeLinear convert through
these helpers, whose numerics are ONNX Cast's (and ml_dtypes', which ONNX's reference calls):
- to a float8 / float4 format: round to nearest, ties to even, from double (so a float64 or int
  input rounds once); beyond the largest finite value, `sat` gives that value, else the format's
  infinity or NaN (float4 has neither and always saturates); NaN gives the format's NaN;
- to float8e8m0 (a power of two): the float32 exponent, rounded by ONNX's round_mode;
- to a 4- or 2-bit integer: a float truncates toward zero and gives 0 outside the type's range,
  an integer wraps.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import dtypes as D


@dataclass(frozen=True)
class MiniFloat:
    """A sign + exponent + mantissa format of at most 8 bits."""
    mbits: int  # mantissa bits
    bias: int
    maxcode: int  # the code of the largest finite magnitude
    sbit: int  # the sign bit
    over: int  # the magnitude code of an overflow without saturation (infinity or NaN)
    nan_pos: int  # the code a positive NaN converts to
    nan_neg: int  # ... and a negative one
    nan_from: int  # magnitude codes from this one up are NaN (256: none)
    inf: int  # the infinity's magnitude code (-1: none)
    uz: bool  # no negative zero; 0x80 is the NaN (the fnuz formats)


MINIFLOATS = {
    "f8e4m3fn": MiniFloat(3, 7, 0x7e, 7, 0x7f, 0x7f, 0xff, 0x7f, -1, False),
    "f8e4m3fnuz": MiniFloat(3, 8, 0x7f, 7, 0x80, 0x80, 0x80, 256, -1, True),
    "f8e5m2": MiniFloat(2, 15, 0x7b, 7, 0x7c, 0x7e, 0xfe, 0x7d, 0x7c, False),
    "f8e5m2fnuz": MiniFloat(2, 16, 0x7f, 7, 0x80, 0x80, 0x80, 256, -1, True),
    # float4 has no NaN: ml_dtypes turns NaN into a zero of the opposite sign, and ONNX's tests expect that
    "f4e2m1": MiniFloat(1, 1, 0x7, 3, 0x7, 0x8, 0x0, 256, -1, False),
}
NARROW_INT_BITS = {"i4": 4, "u4": 4, "i2": 2, "u2": 2}
ROUND_MODES = {"up": 0, "down": 1, "nearest": 2}  # float8e8m0's round_mode, as pdc_to_f8e8m0 takes it

GENERIC = r"""/* ---- narrow types (float8, float4, 4- and 2-bit integers; see pdc/codegen/narrow_c.py) ---- */
/* x rounded to nearest even into a small float format (the MiniFloat fields) */
static inline uint8_t pdc_to_minifloat(double x, int mbits, int bias, int maxcode, int sbit, int over, int nan_pos,
                                       int nan_neg, int uz, int sat) {
    uint64_t u;
    memcpy(&u, &x, 8);
    const int neg = (int)(u >> 63);
    const uint64_t au = u & 0x7fffffffffffffffull;
    if (au > 0x7ff0000000000000ull) return (uint8_t)(neg ? nan_neg : nan_pos);
    int lead = (int)(au >> 52) - 1023; /* the exponent of the leading bit */
    int code = maxcode + 1;            /* far beyond the format's range (infinity too) */
    if (lead <= bias + 8) {
        if (lead < 1 - bias) lead = 1 - bias; /* subnormal: the quantum of the smallest exponent */
        const uint64_t sb = (uint64_t)(1023 + mbits - lead) << 52;
        double scale;
        memcpy(&scale, &sb, 8);
        /* the rounded mantissa (with its leading bit) added to the exponent field: a carry out of
           the mantissa moves to the next exponent by itself */
        code = ((lead + bias - 1) << mbits) + (int)rint(fabs(x) * scale);
    }
    if (code > maxcode) code = sat ? maxcode : over;
    if (code == 0 && uz) return 0;
    return (uint8_t)(code | (neg << sbit));
}
static inline float pdc_from_minifloat(uint8_t c, int mbits, int bias, int sbit, int nan_from, int inf, int uz) {
    const int mag = c & ((1 << sbit) - 1), neg = (c >> sbit) & 1;
    if ((uz && c == 0x80) || mag >= nan_from) return NAN;
    if (mag == inf) return neg ? -INFINITY : INFINITY;
    const int e = mag >> mbits, m = mag & ((1 << mbits) - 1);
    const uint32_t pb = (uint32_t)((e ? e : 1) - bias - mbits + 127) << 23; /* the quantum: a normal float */
    float q;
    memcpy(&q, &pb, 4);
    const float v = (float)(e ? m | (1 << mbits) : m) * q;
    return neg ? -v : v;
}
/* float8e8m0 (2^(c - 127), 0xff NaN), as ONNX converts: the float32 exponent, whatever the sign;
   mode 0 rounds up, 1 down, 2 to nearest; NaN and infinity give NaN */
static inline uint8_t pdc_to_f8e8m0(float x, int sat, int mode) {
    uint32_t u;
    memcpy(&u, &x, 4);
    const uint32_t e = (u >> 23) & 0xffu;
    if (e == 0xffu) return 0xff;
    uint32_t up = mode == 0 ? (u & 0x7fffffu) != 0 : mode == 2 ? ((u >> 22) & 1u) && ((u & 0x3fffffu) || e) : 0;
    if (sat && e == 0xfeu) up = 0;
    return (uint8_t)(e + up);
}
static inline float pdc_f8e8m0_to_f32(uint8_t c) {
    if (c == 0xff) return NAN;
    if (c == 0) return 0x1p-127f;
    const uint32_t b = (uint32_t)c << 23;
    float v;
    memcpy(&v, &b, 4);
    return v;
}
/* a float to a `bits`-bit integer: truncated; NaN and values out of range give 0 (as ml_dtypes) */
static inline uint8_t pdc_to_narrow_int(double x, int lo, int hi, int bits) {
    const double t = trunc(x);
    return t >= lo && t <= hi ? (uint8_t)((int)t & ((1 << bits) - 1)) : 0;
}
"""


def _wrappers() -> str:
    lines = []
    for short, f in MINIFLOATS.items():
        lines.append(f"static inline uint8_t pdc_to_{short}(double x, int sat) {{ return pdc_to_minifloat(x, {f.mbits}, "
                     f"{f.bias}, {f.maxcode:#x}, {f.sbit}, {f.over:#x}, {f.nan_pos:#x}, {f.nan_neg:#x}, {int(f.uz)}, "
                     f"sat); }}")
        lines.append(f"static inline float pdc_{short}_to_f32(uint8_t c) {{ return pdc_from_minifloat(c, {f.mbits}, "
                     f"{f.bias}, {f.sbit}, {f.nan_from}, {f.inf}, {int(f.uz)}); }}")
    for short, bits in NARROW_INT_BITS.items():
        signed = short[0] == "i"
        lo, hi = (-(1 << bits - 1), (1 << bits - 1) - 1) if signed else (0, (1 << bits) - 1)
        mask, half = (1 << bits) - 1, 1 << bits - 1
        lines.append(f"static inline uint8_t pdc_to_{short}(double x) {{ return pdc_to_narrow_int(x, {lo}, {hi}, "
                     f"{bits}); }}")
        value = f"((c & {mask:#x}) ^ {half:#x}) - {half:#x}" if signed else f"c & {mask:#x}"
        lines.append(f"static inline int32_t pdc_{short}_to_i32(uint8_t c) {{ return {value}; }}")
    return "\n".join(lines) + "\n"


NARROW_C = GENERIC + _wrappers()


def decode_fn(dt) -> str:
    """The helper that widens a narrow element: to float (float formats) or int32 (integers)."""
    return f"pdc_{dt.short}_to_{'i32' if dt.short in NARROW_INT_BITS else 'f32'}"


def wide_type(dt):
    """What decode_fn gives: float32 for the float formats, int32 for the integers."""
    return D.int32 if dt.short in NARROW_INT_BITS else D.float32


def int_mask(dt) -> int:
    return (1 << NARROW_INT_BITS[dt.short]) - 1
