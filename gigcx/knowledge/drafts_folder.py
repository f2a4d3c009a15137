"""Where accepted knowledge drafts go: one `*.faq.yml` file each, in the `drafts/` folder of
the knowledge, never into a file the brand team wrote. The team reviews them in its own repo
(move, merge or edit them like any knowledge file); the next sync makes them answerable."""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gigcx.knowledge.documents import FaqEntry

DRAFTS_FOLDER = "drafts"
HEADER = (
    "# Drafted by gigcx from a gig expert's answer ({where}) and accepted by {by} on {day}.\n"
    "# Review it like any knowledge file: edit, move or merge it; the next sync indexes it.\n"
)


class DraftFileError(ValueError):
    """The entry cannot be written: invalid, or its file exists already."""


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    )


_Dumper.add_representer(str, _represent_str)


def slug(text: str, limit: int = 48) -> str:
    """'How do I pair the X2?' -> 'how-do-i-pair-the-x2'."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")
    return words[:limit].rstrip("-") or "entry"


def render_entry(entry: dict[str, Any], *, where: str, by: str, day: date) -> str:
    """The file's text: a header saying where it came from, then a one-entry FAQ list.
    DraftFileError naming the field when the entry is not a valid FAQ entry."""
    try:
        FaqEntry.model_validate(entry)
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"]) or "entry"
        raise DraftFileError(f"{field}: {problem['msg']}") from None
    body = yaml.dump([entry], Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1_000_000)
    return HEADER.format(where=where, by=by.replace("\n", " "), day=day.isoformat()) + body


def write_entry(knowledge_root: Path, name: str, text: str) -> Path:
    """Write `drafts/<name>.faq.yml` under the knowledge folder, all or nothing; refused
    (DraftFileError) if that file exists. Returns the path relative to the knowledge folder."""
    folder = knowledge_root / DRAFTS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.faq.yml"
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".draft-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, target)  # fails if the target exists: never overwrite
        except FileExistsError:
            raise DraftFileError(f"{target} exists already") from None
    finally:
        os.unlink(temporary)
    return target.relative_to(knowledge_root)


def remove_entry(knowledge_root: Path, relative: str) -> None:
    """Undo `write_entry` (when recording the decision failed)."""
    (knowledge_root / relative).unlink(missing_ok=True)
