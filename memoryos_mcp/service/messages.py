"""Error wording shared by the tool contract and the settings: one plain sentence per problem.

A caller (often a model) reads these messages and retries, so each names the argument or setting, says what was
wrong and what is accepted, and quotes the offending value short: a megabyte echoed back would land in the
model's context. pydantic's own messages carry type codes and documentation links, so they are reworded here
from the error's kind and the JSON schema of the field.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

QUOTE_LIMIT = 80  # characters of an invalid value shown back to the caller


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """`value` as the caller would recognise it (strings in quotes, JSON otherwise), cut to about `limit`."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):  # circular or exotic values: never fail while reporting a failure
            text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value):,} characters)" if isinstance(value, str | list | dict) else ""
    return text[: limit - 1] + "…" + size


def names(items: Iterable[str], conjunction: str = "and") -> str:
    """'a', 'b' and 'c' — for lists of accepted names."""
    quoted = [quote(i) for i in items]
    if len(quoted) <= 1:
        return "".join(quoted) or "nothing"
    return ", ".join(quoted[:-1]) + f" {conjunction} " + quoted[-1]


def unknown_names(
    kind: str, unknown: Sequence[str], accepted: Sequence[str], owner: str | None = None
) -> str:
    """ "unknown argument 'usr_input' (did you mean 'user_input'?): add_memory accepts 'user_input', ..."

    Without `owner` the accepted names are not listed (there may be dozens), only the closest one.
    """
    plural = "s" if len(unknown) > 1 else ""
    hint = ""
    if len(unknown) == 1:
        close = difflib.get_close_matches(unknown[0], accepted, n=1, cutoff=0.6)
        hint = f" (did you mean {quote(close[0])}?)" if close else ""
    listed = f": {owner} accepts {names(accepted)}" if owner else ""
    return f"unknown {kind}{plural} {names(unknown[:5])}{hint}{listed}"


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
    return schema


def accepted(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> str:
    """What a JSON schema accepts, in words: 'an integer from 1 to 100', 'true or false', 'a string or null'."""
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        # null stands for "left out" here; whether leaving it out is allowed is said by the caller.
        present = [option for option in options if _resolve(option, root).get("type") != "null"] or options
        return " or ".join(dict.fromkeys(accepted(option, root) for option in present))  # ordered, no repeats
    if "enum" in schema:
        return names((str(v) for v in schema["enum"]), "or")
    if "const" in schema:
        return quote(schema["const"])
    kind = schema.get("type")
    if kind == "integer" or kind == "number":
        noun = "an integer" if kind == "integer" else "a number"
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"{noun} from {low} to {high}"
        if low is not None:
            return f"{noun} of at least {low}"
        if schema.get("exclusiveMinimum") is not None:
            return f"{noun} greater than {schema['exclusiveMinimum']}"
        if high is not None:
            return f"{noun} of at most {high}"
        return noun
    if kind == "string":
        limit = schema.get("maxLength")
        if schema.get("pattern"):
            return f"a string matching {schema['pattern']}"
        return f"a string of at most {limit} characters" if limit else "a string"
    if kind == "boolean":
        return "true or false"
    if kind == "null":
        return "null"
    if kind == "object":
        return "a JSON object"
    if kind == "array":
        items = schema.get("items")
        return (
            f"a list of {_plural(accepted(items, root))}"
            if isinstance(items, Mapping) and items
            else "a list"
        )
    return "a valid value"


def _plural(words: str) -> str:
    for article in ("an ", "a "):
        if words.startswith(article):
            head, _, rest = words[len(article) :].partition(" ")
            return f"{head}s {rest}".strip()
    return words


def _field_name(loc: Sequence[int | str]) -> str:
    head, *rest = [str(part) for part in loc] or ["value"]
    return head + "".join(f"[{quote(int(p) if p.isdigit() else p)}]" for p in rest)


def explain_errors(
    errors: Sequence[Mapping[str, Any]],
    schema: Mapping[str, Any],
    *,
    noun: str = "argument",
    labels: Mapping[str, str] | None = None,
    say_optional: bool = True,
) -> str:
    """pydantic validation errors as plain sentences (at most three), worded from the JSON schema of the model.

    `labels` renames a field in the message (a setting is named by the environment variable that set it);
    `say_optional` adds "(or left out)" for a field that is not required.
    """
    properties: Mapping[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    sentences: list[str] = []
    seen: set[str] = set()
    for error in errors:
        loc = tuple(error.get("loc", ()))
        top = str(loc[0]) if loc else ""
        if top in seen:  # a union reports each of its branches; one sentence per field is enough
            continue
        seen.add(top)
        name = (labels or {}).get(top) or _field_name(loc)
        kind = error.get("type", "")
        field_schema = properties.get(top, {})
        if kind == "missing":
            sentences.append(f"{name} is required: {accepted(field_schema, schema)}")
        elif kind == "extra_forbidden":
            sentences.append(unknown_names(noun, [top], list(properties)))
        elif kind == "value_error":
            reason = str(error.get("ctx", {}).get("error", error.get("msg", "")))
            sentences.append(f"{name} {quote(error.get('input'))} is invalid: {reason}")
        else:
            optional = say_optional and top not in required and len(loc) == 1
            if len(loc) > 1:  # an item inside a list or object: the schema of the whole says what fits
                field_schema = _item_schema(field_schema, schema)
            fits = accepted(field_schema, schema) + (" (or left out)" if optional else "")
            sentences.append(f"{name} must be {fits}; got {quote(error.get('input'))}")
    more = len({str(e.get("loc", ("",))[0]) for e in errors}) - 3
    text = "; ".join(sentences[:3])
    return text + (f"; and {more} more problem{'s' if more > 1 else ''}" if more > 0 else "")


def _item_schema(field_schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    for option in [field_schema, *(field_schema.get("anyOf") or [])]:
        option = _resolve(option, root)
        if isinstance(option.get("items"), Mapping):
            return option["items"]
        if isinstance(option.get("additionalProperties"), Mapping):
            return option["additionalProperties"]
    return field_schema
