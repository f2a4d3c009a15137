"""Pydantic validation errors in words a user can act on: one `field: problem` per error."""

from __future__ import annotations

from pydantic import ValidationError


def field_problems(error: ValidationError, unknown_hint: str = "") -> list[str]:
    """`field: problem` for each error; `unknown_hint` is added to "is not a known field"."""
    problems = []
    for item in error.errors():
        field_name = ".".join(str(part) for part in item["loc"]) or "entry"
        message = item["msg"]
        if item["type"] == "missing":
            message = "is required"
        elif item["type"] == "extra_forbidden":
            message = f"is not a known field{f' ({unknown_hint})' if unknown_hint else ''}"
        problems.append(f"{field_name}: {message}")
    return problems
