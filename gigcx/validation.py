"""Problems with what users wrote, in words they can act on: unreadable files, invalid YAML
(with its line), and pydantic validation errors as one `field: problem` per error."""

from __future__ import annotations

from pathlib import Path

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
