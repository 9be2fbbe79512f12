"""A JSON value checked against a JSON Schema, for the keywords structured-output clients use.

Checked: `type` (one or a list), `enum`, `const`, `properties`, `required`, `additionalProperties` (false or
a schema), `items`, `prefixItems`, `minItems`, `maxItems`, `minLength`, `maxLength`, `pattern`, `minimum`,
`maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `anyOf`, `oneOf`, `allOf`, `not`, and `$ref` to
`#/$defs/...` or `#/definitions/...` (what pydantic and zod write). Other keywords (formats among them) are
not checked: a value that breaks only those passes.
"""

from __future__ import annotations

import re
from typing import Any

MAX_ERRORS = 5
_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
}


def check(value: Any, schema: Any) -> list[str]:
    """What is wrong with `value` (empty: nothing), each with where it is (`$.a[0].b`)."""
    errors: list[str] = []
    _check(value, schema, "$", schema if isinstance(schema, dict) else {}, errors)
    return errors[:MAX_ERRORS]


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool) or (
            isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = _TYPES.get(name)
    return expected is not None and isinstance(value, expected) and not (name != "boolean" and isinstance(value, bool))


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
        ref = schema["$ref"]
        target: Any = root
        if not ref.startswith("#"):
            return {}
        for part in [p for p in ref[1:].split("/") if p]:
            target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**(target if isinstance(target, dict) else {}), **extra}
        seen += 1
    return schema


def _check(value: Any, schema: Any, where: str, root: dict[str, Any], errors: list[str]) -> None:
    if len(errors) >= MAX_ERRORS or schema is True or not isinstance(schema, dict):
        if schema is False:
            errors.append(f"{where}: no value is allowed here")
        return
    schema = _resolve(schema, root)
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_is_type(value, str(n)) for n in names):
            errors.append(f"{where}: expected {' or '.join(map(str, names))}, got {_kind(value)}")
            return
    if "enum" in schema and isinstance(schema["enum"], list) and value not in schema["enum"]:
        errors.append(f"{where}: must be one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: must be {schema['const']!r}")
    _combinators(value, schema, where, root, errors)
    if isinstance(value, dict):
        _object(value, schema, where, root, errors)
    elif isinstance(value, list):
        _array(value, schema, where, root, errors)
    elif isinstance(value, str):
        _string(value, schema, where, errors)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _number(value, schema, where, errors)


def _combinators(value: Any, schema: dict[str, Any], where: str, root: dict[str, Any], errors: list[str]) -> None:
    def passes(sub: Any) -> bool:
        found: list[str] = []
        _check(value, sub, where, root, found)
        return not found

    for sub in schema.get("allOf") or []:
        _check(value, sub, where, root, errors)
    if isinstance(schema.get("anyOf"), list) and not any(passes(s) for s in schema["anyOf"]):
        errors.append(f"{where}: matches none of the allowed shapes (anyOf)")
    if isinstance(schema.get("oneOf"), list) and sum(passes(s) for s in schema["oneOf"]) != 1:
        errors.append(f"{where}: must match exactly one of the allowed shapes (oneOf)")
    if "not" in schema and passes(schema["not"]):
        errors.append(f"{where}: matches a shape that is not allowed (not)")


def _object(value: dict[str, Any], schema: dict[str, Any], where: str, root: dict[str, Any],
            errors: list[str]) -> None:
    found = schema.get("properties")
    props: dict[str, Any] = found if isinstance(found, dict) else {}
    for name in schema.get("required") or []:
        if name not in value:
            errors.append(f"{where}: missing required property {name!r}")
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in props:
            _check(item, props[key], f"{where}.{key}", root, errors)
        elif extra is False:
            errors.append(f"{where}: property {key!r} is not allowed")
        elif isinstance(extra, dict):
            _check(item, extra, f"{where}.{key}", root, errors)


def _array(value: list[Any], schema: dict[str, Any], where: str, root: dict[str, Any], errors: list[str]) -> None:
    found = schema.get("prefixItems")
    prefix: list[Any] = found if isinstance(found, list) else []
    for index, item in enumerate(value):
        sub = prefix[index] if index < len(prefix) else schema.get("items", True)
        _check(item, sub, f"{where}[{index}]", root, errors)
    if isinstance(schema.get("minItems"), int) and len(value) < schema["minItems"]:
        errors.append(f"{where}: needs at least {schema['minItems']} items")
    if isinstance(schema.get("maxItems"), int) and len(value) > schema["maxItems"]:
        errors.append(f"{where}: allows at most {schema['maxItems']} items")


def _string(value: str, schema: dict[str, Any], where: str, errors: list[str]) -> None:
    if isinstance(schema.get("minLength"), int) and len(value) < schema["minLength"]:
        errors.append(f"{where}: shorter than {schema['minLength']} characters")
    if isinstance(schema.get("maxLength"), int) and len(value) > schema["maxLength"]:
        errors.append(f"{where}: longer than {schema['maxLength']} characters")
    if isinstance(schema.get("pattern"), str):
        try:
            if re.search(schema["pattern"], value) is None:
                errors.append(f"{where}: does not match the pattern {schema['pattern']!r}")
        except re.error:
            pass  # a pattern Python cannot read is not checked


def _number(value: float, schema: dict[str, Any], where: str, errors: list[str]) -> None:
    for key, bad, says in (("minimum", lambda v, b: v < b, "below"), ("maximum", lambda v, b: v > b, "above"),
                           ("exclusiveMinimum", lambda v, b: v <= b, "not above"),
                           ("exclusiveMaximum", lambda v, b: v >= b, "not below")):
        bound = schema.get(key)
        if isinstance(bound, (int, float)) and not isinstance(bound, bool) and bad(value, bound):
            errors.append(f"{where}: {value} is {says} {bound}")


def _kind(value: Any) -> str:
    for name in ("null", "boolean", "object", "array", "string"):
        if _is_type(value, name):
            return name
    return "number" if _is_type(value, "number") else type(value).__name__
