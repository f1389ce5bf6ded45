"""Kernel-IR expressions: typed values a printer spells in C, OpenCL C, CUDA or HLS C++.

Every node carries its type (kir.types: the type C gives it). Python operators build nodes
(`a + b`, `a * 0.5`, `a < b`, `-a`, `a & b`); equality is spelled `a.eq(b)` / `a.ne(b)` and the
logical operators `a.land(b)` / `a.lor(b)`, so that `==` keeps its Python meaning. A Python int
becomes an int literal, a Python float a double literal, exactly as an unsuffixed C literal:
use `lit(x, dtype)` for a literal of another type. Math functions are named by their C99 double
spelling (`exp`, `fabs`, `nearbyint`); the printer adds the float suffix (`expf`) or its own
language's name from the argument type.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

from ...ir import dtypes as D
from ...ir.dtypes import DType
from ...ir.errors import UnsupportedError
from ...ir.symbolic import SizeExpr
from .types import C_INT, HALF, INDEX, Type, VectorType, arith, elem, int_type_of, promote, with_elem

BINARY_OPS = ("add", "sub", "mul", "div", "mod", "shl", "shr", "bitand", "bitor", "bitxor",
              "land", "lor", "lt", "le", "gt", "ge", "eq", "ne")
COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")
UNARY_OPS = ("neg", "not", "bitnot")

# math functions: C99 double name -> number of arguments; the result has the (float) argument type
MATH = {name: 1 for name in (
    "exp", "expm1", "exp2", "log", "log1p", "log2", "sqrt", "fabs", "floor", "ceil", "nearbyint", "trunc",
    "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "erf")}
MATH.update({"pow": 2, "fmod": 2, "fmin": 2, "fmax": 2, "atan2": 2})
# classification macros: generic over the argument type, int result
CLASSIFY = ("isinf", "isnan")


class Expr:
    """A typed value; subclasses are frozen dataclasses."""
    dtype: Type

    # arithmetic and bitwise operators build nodes
    def __add__(self, o): return binary("add", self, o)
    def __radd__(self, o): return binary("add", o, self)
    def __sub__(self, o): return binary("sub", self, o)
    def __rsub__(self, o): return binary("sub", o, self)
    def __mul__(self, o): return binary("mul", self, o)
    def __rmul__(self, o): return binary("mul", o, self)
    def __truediv__(self, o): return binary("div", self, o)
    def __rtruediv__(self, o): return binary("div", o, self)
    def __mod__(self, o): return binary("mod", self, o)
    def __rmod__(self, o): return binary("mod", o, self)
    def __lshift__(self, o): return binary("shl", self, o)
    def __rshift__(self, o): return binary("shr", self, o)
    def __and__(self, o): return binary("bitand", self, o)
    def __rand__(self, o): return binary("bitand", o, self)
    def __or__(self, o): return binary("bitor", self, o)
    def __ror__(self, o): return binary("bitor", o, self)
    def __xor__(self, o): return binary("bitxor", self, o)
    def __rxor__(self, o): return binary("bitxor", o, self)
    def __neg__(self): return Unary("neg", self)
    def __invert__(self): return Unary("bitnot", self)
    def __lt__(self, o): return binary("lt", self, o)
    def __le__(self, o): return binary("le", self, o)
    def __gt__(self, o): return binary("gt", self, o)
    def __ge__(self, o): return binary("ge", self, o)

    def eq(self, o): return binary("eq", self, o)
    def ne(self, o): return binary("ne", self, o)
    def land(self, o): return binary("land", self, o)
    def lor(self, o): return binary("lor", self, o)
    def lnot(self): return Unary("not", self)

    __hash__ = object.__hash__


@dataclass(frozen=True, eq=False)
class Const(Expr):
    value: Union[int, float]
    dtype: Type


@dataclass(frozen=True, eq=False)
class Var(Expr):
    name: str
    dtype: Type


@dataclass(frozen=True, eq=False)
class Binary(Expr):
    op: str
    a: Expr
    b: Expr
    dtype: Type


@dataclass(frozen=True, eq=False)
class Unary(Expr):
    op: str
    a: Expr

    @property
    def dtype(self) -> Type:
        if self.op == "not":
            return C_INT
        return with_elem(self.a.dtype, promote(elem(self.a.dtype)))


@dataclass(frozen=True, eq=False)
class Select(Expr):
    """cond ? a : b"""
    cond: Expr
    a: Expr
    b: Expr

    @property
    def dtype(self) -> Type:
        # a choice between two values of one type is that type (C promotes narrow ones to int, which
        # every use promotes again): so a half-precision storage value can be selected unconverted
        if self.a.dtype == self.b.dtype:
            return self.a.dtype
        return arith(self.a.dtype, self.b.dtype)


@dataclass(frozen=True, eq=False)
class Cast(Expr):
    """A conversion to dtype; between float and a half type it is the rounding of KernelContext.store
    (and the widening of KernelContext.load): each printer spells it for its language."""
    dtype: Type
    a: Expr


@dataclass(frozen=True, eq=False)
class Bitcast(Expr):
    """The bits of a (storage) value read as another type of the same size: a bf16 value's uint16
    pattern."""
    dtype: Type
    a: Expr


@dataclass(frozen=True, eq=False)
class Math(Expr):
    """A math function by its C99 double name (MATH) or a classification macro (CLASSIFY)."""
    fn: str
    args: tuple
    dtype: Type


@dataclass(frozen=True, eq=False)
class Call(Expr):
    """A call of a named helper function (a static helper of the kernel file), spelled as is."""
    fn: str
    args: tuple
    dtype: Type


@dataclass(frozen=True)
class Buffer:
    """A named array of elements in a memory space: 'global' (kernel arguments), 'constant'
    (read-only data), 'local' (shared by a work-group) or 'private' (one thread's)."""
    name: str
    dtype: Optional[DType]  # None: an absent optional input (a void pointer nobody reads)
    space: str = "global"

    SPACES = ("global", "constant", "local", "private")

    def __post_init__(self):
        if self.space not in self.SPACES:
            raise ValueError(f"kir: memory space '{self.space}' is not one of {self.SPACES}")

    def __getitem__(self, index) -> "Load":
        return Load(self, as_expr(index))


@dataclass(frozen=True, eq=False)
class Load(Expr):
    """buffer[index]; with lanes > 1, the `lanes` consecutive elements from there as one vector."""
    buffer: Buffer
    index: Expr
    lanes: int = 1

    @property
    def dtype(self) -> Type:
        return self.buffer.dtype if self.lanes == 1 else VectorType(self.buffer.dtype, self.lanes)


@dataclass(frozen=True, eq=False)
class Address(Expr):
    """&buffer[index]: a pointer argument of a helper function (Call) that walks the buffer itself.
    Its type is the element type; only a call's argument may be one."""
    buffer: Buffer
    index: Expr

    @property
    def dtype(self) -> Type:
        return self.buffer.dtype


@dataclass(frozen=True, eq=False)
class Broadcast(Expr):
    """A vector of `lanes` copies of a scalar."""
    a: Expr
    lanes: int

    @property
    def dtype(self) -> Type:
        return VectorType(elem(self.a.dtype), self.lanes)


# ---- builders ------------------------------------------------------------------------------------
def as_expr(x) -> Expr:
    """A Python number as the C literal it would be written as; an Expr as is."""
    if isinstance(x, Expr):
        return x
    if isinstance(x, bool):
        return Const(int(x), C_INT)
    if isinstance(x, int):
        return Const(x, int_type_of(x))
    if isinstance(x, float):
        return Const(x, D.float64)
    if isinstance(x, SizeExpr):  # a size known only at run time: its C expression, an index
        return Var(str(x), INDEX)
    raise TypeError(f"kir: {x!r} is not an expression")


def zero(dtype: DType) -> Const:
    """Zero of any element type (all-zero bits: +0.0 for the half types too)."""
    return Const(0.0 if dtype.is_float else 0, dtype)


def bitcast(dtype: DType, x) -> Expr:
    x = as_expr(x)
    if elem(x.dtype).itemsize != dtype.itemsize:
        raise UnsupportedError(f"kir: cannot reinterpret {x.dtype} as {dtype}: the sizes differ")
    return x if x.dtype == dtype else Bitcast(dtype, x)


def address(buffer: Buffer, index) -> Address:
    """&buffer[index], a helper call's pointer argument."""
    return Address(buffer, as_expr(index))


def lit(value, dtype: DType) -> Const:
    """A literal of a given type (a float literal in the compute type: `lit(0.5, f32)` is 0.5f)."""
    if dtype.short in HALF:
        raise UnsupportedError(f"kir: no {dtype} literals; write the float literal and cast it")
    return Const(float(value) if dtype.is_float else int(value), dtype)


def idx(x) -> Expr:
    """An index expression (int literal or an int Expr)."""
    return as_expr(x)


def binary(op: str, a, b) -> Expr:
    a, b = as_expr(a), as_expr(b)
    if op in COMPARISONS or op in ("land", "lor"):
        t = C_INT
        if isinstance(a.dtype, VectorType) or isinstance(b.dtype, VectorType):
            t = with_elem(arith(a.dtype, b.dtype), C_INT)
    elif op in ("shl", "shr"):
        t = with_elem(a.dtype, promote(elem(a.dtype)))
    else:
        t = arith(a.dtype, b.dtype)
    if op in ("mod", "shl", "shr", "bitand", "bitor", "bitxor") and elem(t).is_float:
        raise UnsupportedError(f"kir: '{op}' needs integer operands, got {a.dtype} and {b.dtype}")
    return Binary(op, a, b, t)


def select(cond, a, b) -> Expr:
    return Select(as_expr(cond), as_expr(a), as_expr(b))


def cast(dtype: Type, x) -> Expr:
    """x converted to dtype (x itself when it already has that type)."""
    x = as_expr(x)
    return x if x.dtype == dtype else Cast(dtype, x)


def math(fn: str, *args) -> Expr:
    """A C99 math function of float arguments (all of one type) or a classification macro."""
    args = tuple(as_expr(a) for a in args)
    if fn in CLASSIFY:
        return Math(fn, args, C_INT)
    if MATH.get(fn) != len(args):
        raise UnsupportedError(f"kir: no math function {fn} of {len(args)} argument(s)")
    t = args[0].dtype
    if not elem(t).is_float or elem(t).short in HALF or any(a.dtype != t for a in args):
        raise UnsupportedError(f"kir: {fn} takes float or double arguments of one type, got "
                               f"{', '.join(str(a.dtype) for a in args)}")
    return Math(fn, args, t)


def call(fn: str, dtype: Type, *args) -> Expr:
    return Call(fn, tuple(as_expr(a) for a in args), dtype)


def any_of(terms: Sequence[Expr]) -> Expr:
    """terms[0] || terms[1] || ... (0 when empty)."""
    out: Optional[Expr] = None
    for t in terms:
        out = t if out is None else out.lor(t)
    return Const(0, C_INT) if out is None else out


def index_var(name: str) -> Var:
    return Var(name, INDEX)


def _int_const(x) -> Optional[int]:
    return x.value if isinstance(x, Const) and isinstance(x.value, int) else None


def iadd(a, b) -> Expr:
    """a + b for index arithmetic, folding zeros and literal sums."""
    a, b = as_expr(a), as_expr(b)
    ca, cb = _int_const(a), _int_const(b)
    if ca is not None and cb is not None:
        return as_expr(ca + cb)
    if cb == 0:
        return a
    if ca == 0:
        return b
    return a + b


def imul(a, b) -> Expr:
    """a * b for index arithmetic, folding zeros, ones and literal products."""
    a, b = as_expr(a), as_expr(b)
    ca, cb = _int_const(a), _int_const(b)
    if ca is not None and cb is not None:
        return as_expr(ca * cb)
    if ca == 0 or cb == 0:
        return as_expr(0)
    if cb == 1:
        return a
    if ca == 1:
        return b
    return a * b


def idiv(a, b) -> Expr:
    """a / b for non-negative index arithmetic, folding a division by one and literal quotients."""
    a, b = as_expr(a), as_expr(b)
    ca, cb = _int_const(a), _int_const(b)
    if ca is not None and cb is not None and ca >= 0 and cb > 0:
        return as_expr(ca // cb)
    return a if cb == 1 else a / b


def imod(a, b) -> Expr:
    """a % b for non-negative index arithmetic, folding a modulo by one and literal remainders."""
    a, b = as_expr(a), as_expr(b)
    ca, cb = _int_const(a), _int_const(b)
    if ca is not None and cb is not None and ca >= 0 and cb > 0:
        return as_expr(ca % cb)
    return as_expr(0) if cb == 1 else a % b


__all__ = ["Expr", "Const", "Var", "Binary", "Unary", "Select", "Cast", "Math", "Call", "Buffer", "Load", "Address",
           "Broadcast", "Bitcast", "as_expr", "zero", "bitcast", "address", "lit", "idx", "binary", "select", "cast",
           "math",
           "call", "any_of",
           "index_var", "iadd", "imul", "idiv", "imod", "BINARY_OPS", "UNARY_OPS", "COMPARISONS", "MATH", "CLASSIFY"]
