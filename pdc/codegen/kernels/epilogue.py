"""The fused epilogue of a conv / gemm / matmul node, as every kernel family reads it.

A fused op (pdc/ir/ops/fused_conv.py) ends in: + residual before the activation, the activation,
+ residual after it. Which part a kernel does in vector registers and which in a scalar pass over
a finished tile is the kernel's choice; the facts it decides from are here, once:

- `clamp_range`: (lo, hi) when the activation is a clamp (none, relu, clip), which any vector
  register file does after the adds; None for the others, which a scalar pass applies by code
  (`act_code`, activations.ACT_CODES) or through a function (`act_fn`).
- The dense kernels (dense_core.py) do the residual before and the clamp in registers when
  nothing follows the activation (`fast`, `clamp`, `lo`, `hi`), everything else in their tile
  post-pass (`post_fields`: the driver's pdc_post); their direct loops inline it all (`statements`).
- The ARM kernels (arm/gemm.py) clamp in registers (`needs_clamp`) and add the residuals around
  a scalar pass (`res_before`, `res_after`).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

from ...ir.ops.fused_conv import RESIDUALS
from ..context import KernelContext
from ..ctypes_c import float_literal
from .activations import ACT_CODES, act_function, act_switch


def c_float(x: float) -> str:
    return float_literal(float(x), "float")


class Epilogue:
    """Residual and activation of a fused node (a node that is not fused_*: none of either)."""

    def __init__(self, ctx: KernelContext, r_index: int = 3):
        attrs = ctx.attrs if ctx.node.op.startswith("fused_") else {}
        self.activation = attrs.get("activation", "none") or "none"
        self.alpha, self.beta = attrs.get("activation_alpha"), attrs.get("activation_beta")
        self.residual = attrs.get("residual", "none") or "none"
        self.has_r = self.residual != "none" and ctx.has_input(r_index)
        self.r = f"in{r_index}"
        self._ctx = ctx
        if self.activation not in ACT_CODES:
            ctx.fail(f"activation '{self.activation}' is not supported")

    @classmethod
    def plain(cls) -> "Epilogue":
        """No activation, no residual (conv, gemm, matmul)."""
        e = cls.__new__(cls)
        e.activation, e.alpha, e.beta, e.residual, e.has_r, e.r, e._ctx = "none", None, None, "none", False, "in3", None
        return e

    # ---- what the node asks for ------------------------------------------------------------------
    @property
    def supported(self) -> bool:
        """A residual named is a residual given (the IR verifier's rule: kernels decline otherwise)."""
        return self.residual in RESIDUALS and (self.residual == "none" or self.has_r)

    @property
    def clamp_range(self) -> Optional[tuple[float, float]]:
        """(lo, hi) when the activation is a clamp (none: (-inf, inf)), else None."""
        if self.activation == "none":
            return -math.inf, math.inf
        if self.activation == "relu":
            return 0.0, math.inf
        if self.activation == "clip":
            return (float(self.alpha if self.alpha is not None else -math.inf),
                    float(self.beta if self.beta is not None else math.inf))
        return None

    @property
    def act_code(self) -> int:
        return ACT_CODES[self.activation]

    @property
    def res_before(self) -> Optional[str]:
        return self.r if self.has_r and self.residual == "before_activation" else None

    @property
    def res_after(self) -> Optional[str]:
        return self.r if self.has_r and self.residual == "after_activation" else None

    def c_alpha_beta(self) -> tuple[str, str]:
        return c_float(self.alpha or 0.0), c_float(self.beta or 0.0)

    # ---- the dense kernels: a register epilogue, else a tile post-pass ---------------------------
    @property
    def fast(self) -> bool:
        """The register epilogue does it all: residual before the activation, then a clamp."""
        return self.clamp_range is not None and self.residual != "after_activation"

    @property
    def clamp(self) -> bool:
        return self.fast and self.activation != "none"

    @property
    def lo(self) -> float:
        return self.clamp_range[0] if self.fast else -math.inf

    @property
    def hi(self) -> float:
        return self.clamp_range[1] if self.fast else math.inf

    def post_fields(self, res_after: str, ra_bs, ra_ld, add: tuple | None = None) -> dict:
        """The dense driver's pdc_post fields of the slow path: activation, Gemm's C, residual after."""
        f = dict(act=self.act_code)
        if self.alpha is not None:
            f["alpha"] = c_float(self.alpha)
        if self.beta is not None:
            f["beta"] = c_float(self.beta)
        if add is not None:
            f.update(add=add[0], add_bs=add[1], add_rs=add[2], add_cs=add[3], add_scale=add[4])
        if self.residual == "after_activation":
            f.update(res_after=res_after, ra_bs=ra_bs, ra_ld=ra_ld)
        return f

    def post_lines(self, res_after: str, ra_bs, ra_ld, add: tuple | None = None) -> list[str]:
        """Declares `pdc_post post` for the slow path (act + residual after)."""
        return [render_post(self.post_fields(res_after, ra_bs, ra_ld, add))]

    def statements(self, ctx: KernelContext, s: str, ct: str, r_index: str, r_load: Callable) -> list[str]:
        """Statements turning the sum `s` (type ct, bias added) into the fused output value, in place."""
        out = []
        if self.residual == "before_activation":
            out.append(f"{s} += ({ct})({r_load(r_index)});")
        if self.activation != "none":
            fn = act_switch(ctx, ct)
            al = float_literal(self.alpha if self.alpha is not None else 0.0, ct)
            be = float_literal(self.beta if self.beta is not None else 0.0, ct)
            out.append(f"{s} = {fn}({self.act_code}, {s}, {al}, {be});")
        if self.residual == "after_activation":
            out.append(f"{s} += ({ct})({r_load(r_index)});")
        return out

    # ---- the ARM kernels: a clamp in registers, other activations through a function ---------------
    @property
    def needs_clamp(self) -> bool:
        return self.clamp_range is not None and self.activation != "none"

    @property
    def act(self) -> int:
        """The code of an activation a scalar pass applies (0: none, or a clamp done in registers)."""
        return 0 if self.clamp_range is not None else self.act_code

    def act_fn(self) -> str:
        """The C function of a post-pass activation ("0" when the activation is a clamp or none)."""
        return act_function(self._ctx, self.activation) if self.act else "0"

    def c_lo_hi(self) -> tuple[str, str]:
        lo, hi = self.clamp_range if self.clamp_range is not None else (-math.inf, math.inf)
        return c_float(lo), c_float(hi)


def render_post(fields: dict, var: str = "post") -> str:
    """`const pdc_post var = {...};` (the dense driver's post-pass job, dense_core.py)."""
    return f"    const pdc_post {var} = {{" + ", ".join(f".{k} = {v}" for k, v in fields.items()) + "};"
