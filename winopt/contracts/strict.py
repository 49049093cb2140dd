"""Config tables checked by msgspec, its errors put in winopt's words: one line per problem.

A schema is a `msgspec.Struct(forbid_unknown_fields=True)` with `msgspec.Meta` limits. Its
error is right but terse (``Expected `int` >= 1 - at `$.jobs.max_parallel_jobs` ``); a
person editing the file wants the key as written there, the value it had and both limits.
`convert` finds the key in the error's path, the value in the table, the limits in the
Struct's type (`msgspec.inspect`), and words them with PHRASES (or a schema's own); a
`Meta(description=...)` says what a value must be, a `dec_hook`'s error is its own words.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from msgspec import inspect as mi

from winopt.contracts.errors import UserError

#: `Meta(le=FLOAT_MAX)` keeps a number finite: msgspec takes inf and nan has no order
FLOAT_MAX = sys.float_info.max

#: how problems are worded (str.format fields: key, value, shown, low, high, interval,
#: what, choices, known)
PHRASES: dict[str, str] = {
    "unknown": "unknown key (known: {known})",
    "missing": "missing",
    "described": "must be {what}, got {shown}",
    "integer": "must be an integer, got {shown}",
    "number": "must be a number, got {shown}",
    "finite": "must be finite, got {value}",
    "range": "must be between {low} and {high}, got {value}",
    "at least": "must be >= {low}, got {value}",
    "above": "must be > {low}, got {value}",
    "string": "must be a string, got {shown}",
    "list": "must be a list, got {shown}",
    "table": "must be a table [{key}], got {shown}",
    "one of": "{value!r} is not one of {choices}",
}

_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


class SchemaError(UserError):
    """A value a schema refuses: `key` as written in the file ("jobs.gpus[1]"), `problem`
    in words. Callers add what names the file or the table."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key, self.problem = key, problem


def convert(raw: Any, schema: Any, *, phrases: Mapping[str, str] = PHRASES,
            dec_hook: Callable[[type, Any], Any] | None = None) -> Any:
    """`raw` as `schema` (a Struct or any msgspec type), or SchemaError naming the key."""
    try:
        return msgspec.convert(raw, schema, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        text, _, at = str(exc).partition(" - at `$")
        path: list[str | int] = [name or int(index) for name, index in _STEP.findall(at.rstrip("`"))]
        raise SchemaError(*_explain(text, path, raw, mi.type_info(schema), {**PHRASES, **phrases})) from None


def shown(value: Any) -> str:
    """A TOML value with its kind: `string '4'`, `boolean True`, `array [1]`, or `2.5`."""
    kind = {bool: "boolean", str: "string", list: "array", dict: "table"}.get(type(value))
    return f"{kind} {value!r}" if kind else repr(value)


def _explain(text: str, path: list[str | int], raw: Any, node: Any, phrases: Mapping[str, str]) -> tuple[str, str]:
    """(key, problem) for msgspec's `text` about the value at `path`."""
    value = raw
    for step in path:
        node = _step(node, step)
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            value = None
    key = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path).lstrip(".")
    if field := re.fullmatch(r"Object (contains unknown|missing required) field `(.*)`", text):
        key = f"{key}.{field[2]}".lstrip(".")
        known = ", ".join(f.encode_name for f in _unwrap(node)[0].fields)
        return key, phrases["unknown" if field[1] == "contains unknown" else "missing"].format(key=key, known=known)
    node, what = _unwrap(node)
    members = [_unwrap(t) for t in (node.types if isinstance(node, mi.UnionType) else (node,))]
    what = what or next((w for _, w in members if w), None)  # `Paths | None`: the paths' words
    words = dict(key=key, value=value, shown=shown(value), what=what)
    if what is not None:
        return key, phrases["described"].format(**words)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    for m, _ in members:
        if number and (isinstance(m, mi.FloatType) or isinstance(m, mi.IntType) and isinstance(value, int)):
            return key, _limits(m, value, words, phrases)
    for kind, name in ((mi.IntType, "integer"), (mi.FloatType, "number"), (mi.LiteralType, "one of"),
                       (mi.ListType | mi.VarTupleType, "list"), (mi.StructType | mi.DictType, "table"),
                       (mi.StrType, "string")):  # fmt: skip
        for m, _ in members:
            if isinstance(m, kind):
                return key, phrases[name].format(choices=", ".join(map(str, getattr(m, "values", ()))), **words)
    return key, text  # a dec_hook's own message, or one msgspec words well enough


def _limits(m: mi.IntType | mi.FloatType, value: float, words: dict[str, Any], phrases: Mapping[str, str]) -> str:
    """The bound `value` breaks, worded with both limits when there are two."""
    if value != value or abs(value) == float("inf"):
        return phrases["finite"].format(**words)
    low, high = (m.gt if m.gt is not None else m.ge), (None if m.le == FLOAT_MAX else m.le)
    low, high = (f"{x:g}" if isinstance(x, float) else str(x) for x in (low, high))
    words.update(low=low, high=high, interval=f"{'(' if m.gt is not None else '['}{low}, {high}]")
    bound = "range" if m.le not in (None, FLOAT_MAX) else "above" if m.gt is not None else "at least"
    return phrases[bound].format(**words)


def _unwrap(node: Any) -> tuple[Any, str | None]:
    """A type without its Metadata, and the description that Metadata gave."""
    what = None
    while isinstance(node, mi.Metadata):
        what = (node.extra_json_schema or {}).get("description", what)
        node = node.type
    return node, what


def _step(node: Any, step: str | int) -> Any:
    """The type one path step below `node` (through a union: its member that has it)."""
    node = _unwrap(node)[0]
    for member in node.types if isinstance(node, mi.UnionType) else (node,):
        member = _unwrap(member)[0]
        if isinstance(step, str) and isinstance(member, mi.StructType):
            return next(f.type for f in member.fields if f.encode_name == step)
        if isinstance(step, int) and isinstance(member, mi.ListType | mi.VarTupleType):
            return member.item_type
    return mi.AnyType()


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds from "7200", "90m", "2h", "1.5d": how config files and flags give durations."""
    match = _DURATION.match(text)
    if not match:
        raise UserError(f"bad duration {text!r} (use seconds or a number with s, m, h or d)")
    return float(match[1]) * _UNIT_SECONDS[match[2]]
