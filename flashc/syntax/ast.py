"""The syntax tree: frozen nodes, each carrying its source span first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from flashc.diagnostics import Span


@dataclass(frozen=True)
class Name:
    span: Span
    id: str


@dataclass(frozen=True)
class Number:
    span: Span
    value: int | float


@dataclass(frozen=True)
class String:
    span: Span
    value: str


@dataclass(frozen=True)
class Tuple:
    span: Span
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class BinOp:
    span: Span
    op: str  # + - * / // **
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Neg:
    span: Span
    operand: Expr


@dataclass(frozen=True)
class Compare:
    """`a < b`: a comparison giving bool (== != < <= > >=)."""

    span: Span
    op: str
    left: Expr
    right: Expr
    op_span: Span


@dataclass(frozen=True)
class Logic:
    """`a and b`, `a or b` on bools."""

    span: Span
    op: str  # and | or
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Not:
    span: Span
    operand: Expr


@dataclass(frozen=True)
class Pipe:
    """`left |> right`: apply `right` to `left`, inserted as first argument of a call."""

    span: Span
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Arg:
    span: Span
    name: str | None
    value: Expr


@dataclass(frozen=True)
class Call:
    span: Span
    func: Expr
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class Attr:
    span: Span
    obj: Expr
    name: str


@dataclass(frozen=True)
class Named:
    """`linear(d) as q_proj`: a layer or block given its state-dict name where it is written."""

    span: Span
    value: Expr
    name: str
    name_span: Span


Expr = Union[Name, Number, String, Tuple, BinOp, Neg, Compare, Logic, Not, Pipe, Call, Attr, Named]


@dataclass(frozen=True)
class TypeExpr:
    span: Span
    dtype: str
    dtype_span: Span
    dims: tuple[Expr, ...]


@dataclass(frozen=True)
class ParamDecl:
    span: Span
    name: str
    default: Expr | None


@dataclass(frozen=True)
class InputDecl:
    span: Span
    name: str
    type: TypeExpr


@dataclass(frozen=True)
class Assign:
    span: Span
    targets: tuple[str, ...]
    value: Expr


@dataclass(frozen=True)
class Output:
    span: Span
    name: str
    value: Expr | None


@dataclass(frozen=True)
class Return:
    span: Span
    values: tuple[Expr, ...]


@dataclass(frozen=True)
class BlockDef:
    span: Span
    name: str
    params: tuple[ParamDecl, ...]
    body: tuple[Stmt, ...]


Stmt = Union[InputDecl, Assign, Output, Return, BlockDef]


@dataclass(frozen=True)
class Model:
    span: Span
    name: str
    params: tuple[ParamDecl, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Target:
    span: Span
    name: str
    type: TypeExpr


@dataclass(frozen=True)
class Loss:
    span: Span
    expr: Expr


@dataclass(frozen=True)
class Regularize:
    span: Span
    expr: Expr
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class Setting:
    span: Span
    name: str
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class PhaseBlock:
    """`phase disc { loss ...; optimizer ...; schedule ...; params "disc.*" }` inside a train section."""

    span: Span
    name: str
    name_span: Span
    body: tuple[TrainStmt, ...]


TrainStmt = Union[Target, Loss, Regularize, Setting, PhaseBlock]


@dataclass(frozen=True)
class Train:
    span: Span
    model: str
    model_span: Span
    body: tuple[TrainStmt, ...]


@dataclass(frozen=True)
class Import:
    """`import "f.flash"` (names is None: every block) or `from "f.flash" import A, B`."""

    span: Span
    path: str
    names: tuple[Name, ...] | None


@dataclass(frozen=True)
class Module:
    span: Span
    file: str
    imports: tuple[Import, ...]
    models: tuple[Model, ...]
    trains: tuple[Train, ...]
