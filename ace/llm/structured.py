"""Structured output helpers shared by the client and the providers: find, parse and validate JSON replies;
describe validation errors to the model; bound a schema for grammar-constrained decoders."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from pydantic import ValidationError

from ace.errors import InvalidInput
from ace.llm.types import T

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def extract_json(text: str) -> str:
    """The JSON object in a reply: code fences and prose around the outermost braces are dropped."""
    s = text.strip()
    if m := _FENCE.match(s):
        s = m.group(1)
    start, end = s.find("{"), s.rfind("}")
    return s[start : end + 1] if 0 <= start < end else s


def parse_output(text: str, output: type[T]) -> T:
    """Validate a reply as ``output``; raises ValidationError or InvalidInput (a ValueError)."""
    candidate = extract_json(text)
    try:
        # strict=False: grammar-constrained decoders (llama.cpp's among them) let raw newlines into strings
        data = json.loads(candidate, strict=False)
    except json.JSONDecodeError as e:
        raise InvalidInput(f"not valid JSON ({e.msg} at position {e.pos})") from None
    return output.model_validate(data)


def validation_summary(e: ValidationError | ValueError) -> str:
    """A short description of what is wrong, to show the model when asking for a repair."""
    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(str(x) for x in err['loc']) or '(root)'}: {err['msg']}" for err in e.errors()[:5])
    return str(e)


def schema_instruction(schema: dict[str, Any]) -> str:
    return "Reply with only a JSON object matching this JSON schema:\n" + json.dumps(schema, separators=(",", ":"))


def bound_schema(
    schema: dict[str, Any],
    max_tokens: int,
    *,
    max_string_chars: int = 400,
    max_array_items: int = 8,
    chars_per_token: float = 1.0,
) -> dict[str, Any]:
    """A copy of ``schema`` whose strings and arrays are bounded so that a whole object fits in ``max_tokens``.

    Grammar-constrained decoders (llama.cpp, vLLM) follow the schema token by token; an unbounded string runs
    until ``max_tokens`` and leaves the JSON unterminated. The budget is ``max_tokens * chars_per_token``
    characters. The object's skeleton (keys, punctuation, enum values, at the largest array sizes) is taken from
    it first; arrays get ``maxItems`` (``max_array_items``, halved until at least 8 characters are left per
    string); the rest is shared by the string slots (arrays count each item), at most ``max_string_chars`` each.
    Bounds already in the schema are kept when tighter. With the default of one character per token the bound is a
    guarantee (every generated token adds at least one character; digits are often one token each); give more
    ``max_tokens`` for longer strings.
    """
    out = copy.deepcopy(schema)
    defs = out.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref", "")
        return defs.get(ref.rsplit("/", 1)[-1], node) if ref.startswith("#/$defs/") else node

    def nodes(node: Any) -> Any:
        if isinstance(node, dict):
            yield node
            for value in node.values():
                yield from nodes(value)
        elif isinstance(node, list):
            for value in node:
                yield from nodes(value)

    def is_free_string(node: dict[str, Any]) -> bool:
        return node.get("type") == "string" and "enum" not in node and "const" not in node

    def measure(node: Any, depth: int = 0) -> tuple[int, int]:
        """(string slots, skeleton characters) of a value of this schema at its largest."""
        if depth > 20 or not isinstance(node, dict):
            return 0, 0
        node = resolve(node)
        if "enum" in node or "const" in node:
            values = node.get("enum", [node.get("const")])
            return 0, max(len(json.dumps(v)) for v in values)
        if is_free_string(node):
            return 1, 2
        kind = node.get("type")
        if kind == "array":
            slots, chars = measure(node.get("items", {}), depth + 1)
            n = node["maxItems"]
            return n * slots, 4 + n * (chars + 2)
        if kind in ("number", "integer"):
            return 0, 16
        if kind == "boolean":
            return 0, 5
        branches = node.get("anyOf") or node.get("oneOf")
        if branches:
            measured = [measure(b, depth + 1) for b in branches]
            return max(m[0] for m in measured), max(m[1] for m in measured)
        slots = chars = 0
        for key, value in node.get("properties", {}).items():
            s, c = measure(value, depth + 1)
            slots, chars = slots + s, chars + c + len(key) + 6  # "key": value, with the spaces models emit
        return slots, chars + 4

    arrays = [(n, n.get("maxItems")) for n in nodes(out) if n.get("type") == "array"]
    budget = max_tokens * chars_per_token
    items = max_array_items
    while True:
        for node, own in arrays:
            node["maxItems"] = items if own is None else min(own, items)
        slots, skeleton = measure(out)
        per_string = (budget - skeleton) / max(1, slots)
        if per_string >= 8 or items == 1:
            break
        items = max(1, items // 2)
    per_string = max(8, min(max_string_chars, int(per_string)))
    for node in nodes(out):
        if is_free_string(node):
            node["maxLength"] = min(node.get("maxLength", per_string), per_string)
    return out
