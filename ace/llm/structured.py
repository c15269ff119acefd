"""Structured output helpers shared by the client and the providers: find, parse and validate JSON replies;
describe validation errors to the model; bound a schema for grammar-constrained decoders."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from pydantic import ValidationError

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
    """Validate a reply as ``output``; raises ValidationError or ValueError."""
    candidate = extract_json(text)
    try:
        json.loads(candidate)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at position {e.pos})") from None
    return output.model_validate_json(candidate)


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
    chars_per_token: float = 2.0,
) -> dict[str, Any]:
    """A copy of ``schema`` whose strings and arrays are bounded so that a whole object fits in ``max_tokens``.

    Grammar-constrained decoders (llama.cpp, vLLM) follow the schema token by token; an unbounded string runs
    until ``max_tokens`` and leaves the JSON unterminated. Every array gets ``maxItems`` (at most
    ``max_array_items``); the string slots the schema can hold (arrays count each item) share a budget of
    ``max_tokens * chars_per_token`` characters, at most ``max_string_chars`` each and at least 8. Bounds already
    in the schema are kept when tighter. The rule is conservative: JSON punctuation also costs tokens.
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

    for node in nodes(out):
        if node.get("type") == "array":
            node["maxItems"] = min(node.get("maxItems", max_array_items), max_array_items)

    def slots(node: Any, depth: int = 0) -> int:
        if depth > 20 or not isinstance(node, dict):
            return 0
        node = resolve(node)
        if is_free_string(node):
            return 1
        if node.get("type") == "array":
            return node["maxItems"] * slots(node.get("items", {}), depth + 1)
        branches = node.get("anyOf") or node.get("oneOf")
        if branches:
            return max(slots(b, depth + 1) for b in branches)
        return sum(slots(v, depth + 1) for v in node.get("properties", {}).values())

    per_string = int(max_tokens * chars_per_token / max(1, slots(out)))
    per_string = max(8, min(max_string_chars, per_string))
    for node in nodes(out):
        if is_free_string(node):
            node["maxLength"] = min(node.get("maxLength", per_string), per_string)
    return out
