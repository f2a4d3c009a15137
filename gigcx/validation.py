"""Problems with what users wrote, in words they can act on: unreadable files, invalid YAML
(with its line), and validation errors (pydantic's, and FastAPI's for a request) as one
`location: problem` per error, worded the same for config, knowledge, experts, cases and the API."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


def read_user_file(path: Path, what: str, error: type[Exception]) -> str:
    """The text of `path`, or `error` saying it is missing or unreadable (`what` names it:
    "config file", "experts file", ...)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as problem:
        raise error(f"{path}: cannot read {what} ({problem})") from None


def yaml_problem(path: Path, error: yaml.YAMLError) -> str:
    """`path:line: invalid YAML: problem` for a YAML parse error."""
    mark = getattr(error, "problem_mark", None)
    where = f":{mark.line + 1}" if mark is not None else ""
    return f"{path}{where}: invalid YAML: {getattr(error, 'problem', None) or error}"


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field: where it is and what is wrong, in words a user can act on."""

    location: str  # dotted, e.g. "bot.mode" or "products.0.id"
    message: str  # e.g. "is required", "'gpt' is not allowed; use one of: 'quote' or 'llm'"
    kind: str  # pydantic's error type, e.g. "missing", "extra_forbidden"
    loc: tuple[str | int, ...]  # the location's parts, printable, as pydantic gave them
    given: Any = field(default=None, repr=False, compare=False)  # the value that was refused

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


def field_problems(
    error: ValidationError | Sequence[Mapping[str, Any]],
    *,
    known_fields: Iterable[str] = (),
    leave_out: Collection[str] = (),
    whole: str = "entry",
    quote_values: bool = False,
) -> list[FieldProblem]:
    """Each error of `error` (a ValidationError, or the list its `.errors()` gives) as a
    `location: message` item.

    `known_fields` are named after "is not a known field"; `leave_out` are location parts not
    shown (FastAPI's "body"); `whole` names the location of an error about the whole thing;
    `quote_values` adds the refused value to every message (a value not allowed or not in
    the expected format is always quoted). Values are clipped and escaped, so any output can
    carry them.
    """
    items = error.errors() if isinstance(error, ValidationError) else error
    known = ", ".join(known_fields)
    problems = []
    for item in items:
        loc = tuple(part if isinstance(part, int) else _shown(part) for part in item["loc"])
        shown_loc = [str(part) for part in loc if part not in leave_out]
        given = item.get("input")
        problems.append(
            FieldProblem(
                location=".".join(shown_loc) or whole,
                message=_message(item, known, quote_values),
                kind=item["type"],
                loc=loc,
                given=given,
            )
        )
    return problems


def _message(item: Mapping[str, Any], known: str, quote_value: bool) -> str:
    kind, given, context = item["type"], item.get("input"), item.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return f"is not a known field (known fields: {known})" if known else "is not a known field"
    if kind == "literal_error":
        return f"{_quoted(given)} is not allowed; use one of: {context.get('expected', '')}"
    if kind == "string_pattern_mismatch":
        return f"{_quoted(given)} is not in the expected format ({context.get('pattern', '')})"
    if kind == "json_invalid":
        return "is not valid JSON"
    message = str(item["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if quote_value and isinstance(given, str | int | float):  # a mapping or list is too long
        message = f"{message} (got {_quoted(given)})"
    return message


def _quoted(value: object) -> str:
    """`value` as Python writes it, clipped: text quoted, its unprintable characters escaped."""
    return repr(value[:200]) if isinstance(value, str) else repr(value)[:200]


def _shown(value: object) -> str:
    """`value` as text any output can carry: unprintable characters escaped, clipped."""
    text = str(value)[:200]
    return text if text.isprintable() else repr(text)[1:-1]
