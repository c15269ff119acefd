"""Tools for example agents. :func:`calculate` evaluates arithmetic safely: it walks the parsed expression and
allows numbers, + - * / // % **, unary signs, parentheses and a few functions (abs, round, min, max, sqrt, log,
exp). Names, attributes, calls to anything else, and huge powers are refused with :class:`ToolError`, so model
output can be passed to it as it is."""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Any


class ToolError(ValueError):
    """The tool refused its input (not arithmetic, or too large); the message says why."""


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "log": math.log,
    "exp": math.exp,
}
MAX_CHARS = 500
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")  # 1,200 -> 1200; max(1,2) keeps its comma
MAX_EXPONENT = 1000


def calculate(expression: str) -> float:
    """The value of an arithmetic ``expression`` (``"(1200 - 1000) / 1000 * 100"`` → 20.0)."""
    text = _THOUSANDS.sub("", expression.strip()).replace("$", "").replace("%", "")
    if not text:
        raise ToolError("empty expression")
    if len(text) > MAX_CHARS:
        raise ToolError(f"expression longer than {MAX_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise ToolError(f"not an arithmetic expression: {e.msg}") from None
    try:
        value = _eval(tree.body)
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as e:
        if isinstance(e, ToolError):
            raise
        raise ToolError(f"cannot evaluate: {e}") from None
    return float(value)


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolError(f"exponent {right} is too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        if node.keywords:
            raise ToolError("keyword arguments are not allowed")
        return _FUNCTIONS[node.func.id](*(_eval(a) for a in node.args))
    raise ToolError(f"not allowed in an arithmetic expression: {ast.dump(node)[:80]}")


__all__ = ["ToolError", "calculate"]
