"""The static geometry of a convolution, shared by every kernel family's conv generators."""
from __future__ import annotations

import math

from ...ir.ops.nn_common import resolve_window
from ...ir.ops.nn_conv import conv_transpose_geometry


class ConvGeom:
    """A convolution's static geometry (NCHW), spatial dims padded to 3 (D, H, W) with leading 1s
    (a 1-D conv is H = D = 1). The 2-D names (H, W, OH, ..., pw) are the last two spatial dims."""

    def __init__(self, x_shape, w_shape, attrs, transpose: bool = False):
        self.n, self.c = x_shape[0], x_shape[1]
        self.nsp = len(x_shape) - 2
        kernel = list(w_shape[2:])
        self.group = int(attrs.get("group", 1) or 1)
        if transpose:
            strides = list(attrs.get("strides") or [1] * self.nsp)
            dilations = list(attrs.get("dilations") or [1] * self.nsp)
            out, begin = conv_transpose_geometry(list(x_shape[2:]), kernel, attrs)
            self.m = w_shape[1] * self.group
        else:
            strides, dilations, begin, out, _ = resolve_window(x_shape, kernel, attrs)
            self.m = w_shape[0]
        pad = 3 - self.nsp
        self.in_sp = [1] * pad + list(x_shape[2:])
        self.out_sp = [1] * pad + list(out)
        self.kernel = [1] * pad + kernel
        self.strides = [1] * pad + list(strides)
        self.dilations = [1] * pad + list(dilations)
        self.begin = [0] * pad + list(begin)
        self.cg, self.mg = self.c // self.group, self.m // self.group
        self.taps = math.prod(self.kernel)
        self.k = self.cg * self.taps
        self.p_in = math.prod(self.in_sp)
        self.p_out = math.prod(self.out_sp)
        _, self.H, self.W = self.in_sp
        _, self.OH, self.OW = self.out_sp
        _, self.KH, self.KW = self.kernel
        _, self.sh, self.sw = self.strides
        _, self.dh, self.dw = self.dilations
        _, self.ph, self.pw = self.begin

    @property
    def pointwise(self) -> bool:
        return (self.taps == 1 and all(s == 1 for s in self.strides) and not any(self.begin)
                and self.in_sp == self.out_sp)

    def c_fields(self) -> str:
        """The initializer of a pdc_im2col (dense_conv_c.py) after its first two fields."""
        (D, H, W), (OD, OH, OW), (KD, KH, KW) = self.in_sp, self.out_sp, self.kernel
        (sd, sh, sw), (dd, dh, dw), (pd, ph, pw) = self.strides, self.dilations, self.begin
        return (f"{self.cg}, {D}, {H}, {W}, {OD}, {OH}, {OW}, {KD}, {KH}, {KW}, {sd}, {sh}, {sw}, "
                f"{dd}, {dh}, {dw}, {pd}, {ph}, {pw}, {int(self.pointwise)}")
