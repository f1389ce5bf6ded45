"""CPrinter: kernel IR as C99 (what pdc's host and microcontroller targets compile).

Everything a C-family language spells differently is a table or a small method, so that OpenCL C,
CUDA C or HLS C++ is a subclass overriding only those: `type_names` (dtype -> type), `binary_ops` /
`unary_ops` (op -> operator), `math_name` (float suffix, renamed functions), `space_qualifiers`
(memory space -> qualifier), `kernel_prefix`, `loop_pragmas` / `loop_body_pragmas` (Parallel /
Vectorize / Unroll / Pipeline -> lines before the loop or opening its body), `bound_loop` (a loop
bound to work-items), `barrier`, and `convert` (casts, including the half-precision conversions).

Expressions print with the fewest parentheses C's precedence needs, plus the ones GCC's
-Wparentheses asks for (a && inside ||, comparisons and arithmetic inside bitwise operators, + or
- inside a shift, a comparison of comparisons, a ! operand of a bitwise operator) and around
nested conditionals, for readability.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Optional, Union

from ...ir.dtypes import DType, from_short
from ...ir.errors import UnsupportedError
from ..ctypes_c import C_TYPES, float_literal, int_literal
from .expr import (Address, Binary, Bitcast, Broadcast, Call, Cast, COMPARISONS, Const, Expr, Load, Math, Select,
                   Unary, Var)
from .stmt import (Allocate, Assign, Barrier, Bind, Block, Break, Check, Comment, ConstArray, Continue, Copy, Declare,
                   Fill, For, If, Kernel, Stmt, Store, WeightsView)
from .types import HALF, Type, VectorType, elem
from .walk import buffers_used, nodes

PREC = {"lor": 4, "land": 5, "bitor": 6, "bitxor": 7, "bitand": 8, "eq": 9, "ne": 9, "lt": 10, "le": 10,
        "gt": 10, "ge": 10, "shl": 11, "shr": 11, "add": 12, "sub": 12, "mul": 13, "div": 13, "mod": 13}
SELECT, UNARY, PRIMARY = 3, 14, 16
BITWISE = ("bitand", "bitor", "bitxor")
COMPOUND = ("add", "sub", "mul", "div", "mod", "shl", "shr", "bitand", "bitor", "bitxor")  # x op= y


class CPrinter:
    indent = "    "
    type_names = dict(C_TYPES)
    index_type = "int64_t"
    binary_ops = {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%", "shl": "<<", "shr": ">>",
                  "bitand": "&", "bitor": "|", "bitxor": "^", "land": "&&", "lor": "||",
                  "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
    unary_ops = {"neg": "-", "not": "!", "bitnot": "~"}
    math_names: dict = {}          # C99 name -> this language's name (before the float suffix)
    float_functions = {"erf": "pdc_erff"}  # float32 forms of the preamble's (c_renderer.PREAMBLE)
    float_suffix = "f"             # expf, tanhf: float math functions; "" where they are overloaded
    space_qualifiers = {"global": "", "constant": "", "local": "", "private": ""}
    kernel_prefix = ""
    float_literal_suffix = "f"
    const_array_prefix = "static const"
    weights_name = "pdc_weights"  # the bundle's constant data (bytes)
    status_param = "pdc_err"  # where a kernel with a Check reports bad input data

    # ---- types ---------------------------------------------------------------------------------
    def type_name(self, t: Optional[Type]) -> str:
        if t is None:
            return "void"
        if isinstance(t, VectorType):
            return self.vector_type_name(t)
        if t.short not in self.type_names:  # a narrow type on a device: the node runs on the host
            raise UnsupportedError(f"kir: {type(self).__name__} has no spelling for {t}")
        return self.type_names[t.short]

    def vector_type_name(self, t: VectorType) -> str:
        """GCC vector extension types, declared at the top of the body (see vector_typedefs)."""
        return f"pdc_{t.elem.short}x{t.lanes}"

    def vector_typedefs(self, root) -> list[str]:
        seen = sorted({n.dtype.short: n.dtype for n in nodes(root)
                       if isinstance(n, Expr) and isinstance(n.dtype, VectorType)}.items())
        # element alignment: vectors are loaded from and stored to any element offset
        return [f"typedef {self.type_names[t.elem.short]} {self.vector_type_name(t)} __attribute__(("
                f"vector_size({t.elem.itemsize * t.lanes}), aligned({t.elem.itemsize}), may_alias));"
                for _, t in seen]

    # ---- expressions -----------------------------------------------------------------------------
    def expr(self, e: Expr) -> str:
        return self._expr(e)[0]

    def _expr(self, e: Expr) -> tuple[str, int]:
        """(text, precedence of its outermost operator)."""
        if isinstance(e, Const):
            text = self.literal(e)
            return text, (UNARY if text.startswith("-") else PRIMARY)
        if isinstance(e, Var):
            return e.name, PRIMARY
        if isinstance(e, Load):
            return self.load(e), PRIMARY
        if isinstance(e, Binary):
            return self.binary(e), PREC[e.op]
        if isinstance(e, Unary):
            inner = self._operand(e.a, UNARY)
            sym = self.unary_ops[e.op]
            if sym == "-" and inner.startswith("-"):
                inner = f"({inner})"
            return f"{sym}{inner}", UNARY
        if isinstance(e, Select):
            return self.select(e), SELECT
        if isinstance(e, Cast):
            return self.convert(e.dtype, e.a)
        if isinstance(e, Bitcast):
            return self.bitcast(e)
        if isinstance(e, Math):
            return f"{self.math_name(e)}({', '.join(self.expr(a) for a in e.args)})", PRIMARY
        if isinstance(e, Call):
            return f"{e.fn}({', '.join(self.expr(a) for a in e.args)})", PRIMARY
        if isinstance(e, Broadcast):
            return self.broadcast(e), PRIMARY
        if isinstance(e, Address):
            text = self.address(e.buffer.name, e.index)
            return text, (PRIMARY if text == e.buffer.name else PREC["add"])
        raise TypeError(f"kir: cannot print {e!r}")

    def _operand(self, e: Expr, min_prec: int, force: bool = False) -> str:
        text, prec = self._expr(e)
        return f"({text})" if force or prec < min_prec else text

    def literal(self, c: Const) -> str:
        t = c.dtype
        if isinstance(t, VectorType):
            raise UnsupportedError("kir: vector literals are written as Broadcast")
        if t.short in HALF and c.value == 0:
            return "0"  # all-zero bits: +0.0 in the storage type
        if t.is_float:
            return self.float_literal(float(c.value), t)
        v = int(c.value)
        if t.short == "u64" and v > 2 ** 63 - 1:
            return f"{v}ULL"
        text = int_literal(v)
        return text if t.short in ("i32", "i64") else f"({self.type_name(t)}){text}"

    def float_literal(self, x: float, t: DType) -> str:
        suffix = self.float_literal_suffix if t.short == "f32" else ""
        if t.short not in ("f32", "f64"):
            raise UnsupportedError(f"kir: no {t} literals")
        if x == x and abs(x) != float("inf"):
            if x == int(x) and abs(x) < 2 ** 24:
                return f"{'-' if math.copysign(1, x) < 0 else ''}{abs(int(x))}.0{suffix}"
            dec = repr(x)
            if len(dec) <= 10 and "e" not in dec and Fraction(dec) == Fraction(x):
                return dec + suffix  # exactly the binary value: no rounding in the compiler
        return float_literal(x, self.type_name(t))

    def binary(self, e: Binary) -> str:
        p = PREC[e.op]

        def side(x: Expr, right: bool) -> str:
            force = False
            if isinstance(x, Binary):
                if e.op == "lor" and x.op == "land":
                    force = True
                elif e.op in BITWISE and x.op != e.op:
                    force = True
                elif e.op in ("shl", "shr") and x.op in ("add", "sub"):
                    force = True
                elif e.op in COMPARISONS and x.op in COMPARISONS:
                    force = True
            elif isinstance(x, Unary) and x.op == "not" and e.op in BITWISE:
                force = True
            return self._operand(x, p + 1 if right else p, force)
        return f"{side(e.a, False)} {self.binary_ops[e.op]} {side(e.b, True)}"

    def select(self, e: Select) -> str:
        # a bitwise condition in parentheses: clang warns that ?: binds looser than | (-Wparentheses)
        bitwise = isinstance(e.cond, Binary) and e.cond.op in BITWISE
        cond = self._operand(e.cond, SELECT + 1, bitwise)
        a = self._operand(e.a, SELECT, isinstance(e.a, Select))
        b = self._operand(e.b, SELECT, isinstance(e.b, Select))
        return f"{cond} ? {a} : {b}"

    def math_name(self, e: Math) -> str:
        if elem(e.dtype).short == "f32" and e.fn in self.float_functions:
            return self.float_functions[e.fn]
        name = self.math_names.get(e.fn, e.fn)
        if e.fn in ("isinf", "isnan"):
            return name
        return name + (self.float_suffix if elem(e.dtype).short == "f32" else "")

    def convert(self, to: Type, x: Expr) -> tuple[str, int]:
        """A cast, half-precision types converted like KernelContext.load / store."""
        frm = x.dtype
        if isinstance(to, VectorType) or isinstance(frm, VectorType):
            return f"__builtin_convertvector({self.expr(x)}, {self.type_name(to)})", PRIMARY
        if to.is_narrow and frm.is_int:  # a 4- or 2-bit integer's bits (narrow_c.py; the caller masked them)
            return f"({self.type_name(to)}){self._operand(x, UNARY)}", UNARY
        if to.is_narrow or frm.is_narrow:
            raise UnsupportedError(f"kir: {frm} to {to} converts through the narrow types' helpers (narrow_c.py)")
        if frm.short == "bf16":  # widening: exact through float
            text = f"pdc_bf16_to_f32({self.expr(x)})"
            return (text, PRIMARY) if to.short == "f32" else (f"({self.type_name(to)}){text}", UNARY)
        if to.short == "bf16":
            return f"pdc_f32_to_bf16({self.expr(x)})", PRIMARY
        if to.short == "f16":
            return f"({self.type_name(to)})({self.expr(x)})", UNARY
        return f"({self.type_name(to)}){self._operand(x, UNARY)}", UNARY

    def bitcast(self, e: Bitcast) -> tuple[str, int]:
        """Storage types spelled as one C integer type reinterpret by a conversion (bf16 is uint16_t)."""
        to, frm = self.type_name(e.dtype), self.type_name(e.a.dtype)
        ints = ("int8_t", "uint8_t", "int16_t", "uint16_t", "int32_t", "uint32_t", "int64_t", "uint64_t")
        if to == frm:
            return self._expr(e.a)
        if to in ints and frm in ints:  # same size: the conversion keeps the bits
            return f"({to}){self._operand(e.a, UNARY)}", UNARY
        raise UnsupportedError(f"kir: the C printer cannot reinterpret {e.a.dtype} as {e.dtype}")

    def load(self, e: Load) -> str:
        if e.lanes == 1:
            return f"{e.buffer.name}[{self.expr(e.index)}]"
        return f"*(const {self.type_name(e.dtype)} *)({self.address(e.buffer.name, e.index)})"

    def broadcast(self, e: Broadcast) -> str:
        v = self.expr(e.a)
        return f"({self.type_name(e.dtype)}){{{', '.join([v] * e.lanes)}}}"

    def address(self, name: str, index: Expr) -> str:
        if isinstance(index, Const) and index.value == 0:
            return name
        return f"{name} + {self._operand(index, PREC['add'] + 1)}"

    # ---- statements ------------------------------------------------------------------------------
    def lines(self, s: Stmt, level: int) -> list[str]:
        pad = self.indent * level
        if isinstance(s, Block):
            if not s.scoped:
                return [ln for x in s.body for ln in self.lines(x, level)]
            return [pad + "{"] + [ln for x in s.body for ln in self.lines(x, level + 1)] + [pad + "}"]
        simple = self.simple(s)
        if simple is not None:
            return [pad + simple]
        if isinstance(s, If):
            cond = self.expr(s.cond)
            inline = self._inline(s.then) if s.orelse is None else None
            if inline is not None:
                return [f"{pad}if ({cond}) {inline}"]
            out = [f"{pad}if ({cond}) {{"] + self._inner(s.then, level)
            if s.orelse is not None:
                out += [f"{pad}}} else {{"] + self._inner(s.orelse, level)
            return out + [pad + "}"]
        if isinstance(s, For):
            if isinstance(s.annotation, Bind):
                return self.bound_loop(s, level)
            head = (f"{pad}for ({self.index_type} {s.var.name} = {self.expr(s.start)}; {s.var.name} < "
                    f"{self.expr(s.stop)}; {s.var.name}{'++' if isinstance(s.step, int) and s.step == 1 else f' += {s.step}'})")
            out = self.loop_pragmas(s.annotation, level)
            first = self.loop_body_pragmas(s.annotation, level + 1)
            inline = None if first else self._inline(s.body)
            if inline is not None:
                return out + [f"{head} {inline}"]
            return out + [head + " {"] + first + self._inner(s.body, level) + [pad + "}"]
        if isinstance(s, Barrier):
            return [pad + self.barrier(s)]
        if isinstance(s, Fill):
            return self.fill(s, level)
        raise TypeError(f"kir: cannot print {s!r}")

    def _inner(self, b: Block, level: int) -> list[str]:
        """A block's statements one level in (its braces are the header's)."""
        return [ln for x in b.body for ln in self.lines(x, level + 1)]

    def _inline(self, b: Block) -> Optional[str]:
        """The one simple statement of a block, to print on its header's line; else None."""
        if len(b.body) == 1 and isinstance(b.body[0], (Store, Assign, Continue, Break, Copy)):
            return self.simple(b.body[0])
        return None

    def simple(self, s: Stmt) -> Optional[str]:
        """One-line statements (None for compound ones)."""
        if isinstance(s, Declare):
            q = "const " if s.const and s.init is not None else ""
            init = "" if s.init is None else f" = {self.expr(s.init)}"
            return f"{q}{self.type_name(s.var.dtype)} {s.var.name}{init};"
        if isinstance(s, Assign):
            v = s.value
            if isinstance(v, Binary) and v.op in COMPOUND and isinstance(v.a, Var) and v.a.name == s.var.name:
                if v.op in ("add", "sub") and isinstance(v.b, Const) and v.b.value == 1:
                    return f"{s.var.name}{'++' if v.op == 'add' else '--'};"
                return f"{s.var.name} {self.binary_ops[v.op]}= {self.expr(v.b)};"
            return f"{s.var.name} = {self.expr(v)};"
        if isinstance(s, Store):
            if s.lanes == 1:
                return f"{s.buffer.name}[{self.expr(s.index)}] = {self.expr(s.value)};"
            at = self.address(s.buffer.name, s.index)
            return f"*({self.type_name(s.value.dtype)} *)({at}) = {self.expr(s.value)};"
        if isinstance(s, Continue):
            return "continue;"
        if isinstance(s, Break):
            return "break;"
        if isinstance(s, Check):
            return f"if ({self.expr(s.bad)}) *{self.status_param} = {s.status};"
        if isinstance(s, Comment):
            return f"/* {comment_text(s.text)} */"
        if isinstance(s, Allocate):
            q = self.space_qualifiers[s.buffer.space]
            return f"{q + ' ' if q else ''}{self.type_name(s.buffer.dtype)} {s.buffer.name}[{s.size}];"
        if isinstance(s, ConstArray):
            b = s.buffer
            values = ", ".join(self.literal(Const(v, b.dtype)) for v in s.values)
            return f"{self.const_array_prefix} {self.type_name(b.dtype)} {b.name}[{len(s.values)}] = {{{values}}};"
        if isinstance(s, WeightsView):
            t = self.type_name(s.buffer.dtype)
            return f"const {t} *{s.buffer.name} = (const {t} *)({self.weights_name} + {s.offset});"
        if isinstance(s, Copy):
            dst, src = self.address(s.dst.name, s.dst_index), self.address(s.src.name, s.src_index)
            copy = f"memcpy({dst}, {src}, {self._operand(s.count, PREC['mul'])} * sizeof(*{s.dst.name}));"
            return f"if ((const void *)({dst}) != (const void *)({src})) {copy}" if s.in_place else copy
        return None

    def fill(self, s: Fill, level: int) -> list[str]:
        pad = self.indent * level
        if s.zero:
            return [f"{pad}memset({self.address(s.dst.name, s.index)}, 0, "
                    f"{self._operand(s.count, PREC['mul'])} * sizeof(*{s.dst.name}));"]
        i = "fill_i"
        at = i if isinstance(s.index, Const) and s.index.value == 0 else f"{self._operand(s.index, PREC['add'])} + {i}"
        return [f"{pad}for ({self.index_type} {i} = 0; {i} < {self.expr(s.count)}; {i}++) "
                f"{s.dst.name}[{at}] = {self.expr(s.value)};"]

    # ---- what the GPU and HLS printers override ----------------------------------------------------
    def loop_pragmas(self, annotation, level: int) -> list[str]:
        """Lines before a loop. Plain C leaves scheduling to the compiler: threads come from
        pdc_parallel_for, not from loops, and -O2 vectorizes and unrolls on its own."""
        return []

    def loop_body_pragmas(self, annotation, level: int) -> list[str]:
        """Lines opening a loop's body (where HLS wants PIPELINE and UNROLL)."""
        return []

    def bound_loop(self, s: For, level: int) -> list[str]:
        """A serial target runs a loop bound to work-items as an ordinary loop."""
        return self.lines(For(s.var, s.start, s.stop, s.body, s.step, None), level)

    def barrier(self, s: Barrier) -> str:
        raise UnsupportedError("kir: a barrier needs a work-group target (OpenCL, CUDA); C runs one thread")

    # ---- kernels -----------------------------------------------------------------------------------
    def param(self, p) -> str:
        b = p.buffer
        q = self.space_qualifiers[b.space]
        return f"{q + ' ' if q else ''}{'const ' if p.const else ''}{self.type_name(b.dtype)} *{b.name}"

    def signature(self, k: Kernel) -> str:
        params = [self.param(p) for p in k.params]
        if any(isinstance(n, Check) for n in nodes(k.body)):
            params.append(f"pdc_status *{self.status_param}")
        return f"{self.kernel_prefix}void {k.name}({', '.join(params) or 'void'})"

    def body(self, k: Union[Kernel, Block, Stmt]) -> str:
        """The statements of a kernel (one level indented), parameters it never reads marked used."""
        root = k.body if isinstance(k, Kernel) else k
        out = [self.indent + t for t in self.vector_typedefs(root)]
        if isinstance(k, Kernel):
            used = buffers_used(root)
            unused = [p.buffer.name for p in k.params if p.buffer.name not in used]
            if unused:
                out.append(self.indent + " ".join(f"(void){n};" for n in unused))
        out += self.lines(root, 1)
        return "\n".join(out)

    def function(self, k: Kernel) -> str:
        return f"{self.signature(k)} {{\n{self.body(k)}\n}}\n"


class DevicePrinter(CPrinter):
    """What the GPU printers (OpenCL C, CUDA C) share: loops bound to work-items, offsets, and the
    status buffer of kernels that check their input data."""
    status_type = "int"  # a device buffer, not the host's pdc_status
    float_functions: dict = {}  # the languages' own erff
    # no narrow types (their conversions are the host C's): such a node runs on the host
    type_names = {k: v for k, v in C_TYPES.items() if not from_short(k).is_narrow}

    def work_item(self, scope: str, dim: int) -> str:
        """The id of this work-item (scope global / local) or group along dimension dim."""
        raise NotImplementedError

    def bound_loop(self, s: For, level: int) -> list[str]:
        """One work-item (or group) per iteration: the id, offset by start and scaled by step, and a
        guard for the launch's rounding up to whole work-groups."""
        b: Bind = s.annotation
        pad, inner = self.indent * level, self.indent * (level + 1)
        at = self.work_item(b.scope, b.dim)
        if s.step != 1:
            at = f"{at} * {s.step}"
        if not (isinstance(s.start, Const) and s.start.value == 0):
            at = f"{self._operand(s.start, PREC['add'])} + {at}"
        out = [pad + "{", f"{inner}const {self.index_type} {s.var.name} = {at};",
               f"{inner}if ({s.var.name} < {self.expr(s.stop)}) {{"]
        out += [ln for x in s.body.body for ln in self.lines(x, level + 2)]
        return out + [inner + "}", pad + "}"]

    def _at(self, base: Expr, k: str) -> str:
        """base + k, as an index expression (k alone for a zero base)."""
        if isinstance(base, Const) and base.value == 0:
            return k
        return f"{self._operand(base, PREC['add'])} + {k}"

    def signature(self, k: Kernel) -> str:
        """Buffers only: a kernel that checks its input data reports through a status buffer."""
        text = super().signature(k)
        return text.replace(f"pdc_status *{self.status_param}", f"{self.status_type} *{self.status_param}")


def comment_text(s: str) -> str:
    return s.replace("*/", "*\\/").replace("/*", "/\\*").replace("\n", " ")


__all__ = ["CPrinter", "DevicePrinter", "comment_text"]
