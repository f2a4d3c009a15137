"""Customer attributes a widget may send (name, e-mail, plan, page, ...): how many, how long,
and which names are the server's own, so no customer can show experts `verified: true`."""

from __future__ import annotations

import re
from collections.abc import Mapping

# Names the server sets itself, or that would pass for them on the experts' card. Compared
# without case or separators ("User-ID" is user_id); any name with "verified" in it is refused.
RESERVED_ATTRIBUTES = (
    "verified",
    "customer_id",
    "user_id",
    "user_hash",
    "contact_email",
    "conversation_id",
)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}")
NAME_RULE = "1 to 64 letters, digits, spaces, '_', '.' or '-', starting with a letter or digit"


def _folded(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_RESERVED = {_folded(name) for name in RESERVED_ATTRIBUTES}


def is_reserved(name: str) -> bool:
    folded = _folded(name)
    return folded in _RESERVED or "verified" in folded


def attribute_problem(
    attributes: Mapping[str, object], max_count: int, max_chars: int
) -> tuple[str, str] | None:
    """The first thing wrong with `attributes`, as (field, problem); None if nothing is."""
    if len(attributes) > max_count:
        return "attributes", f"at most {max_count} attributes (got {len(attributes)})"
    for name, value in attributes.items():
        if not NAME.fullmatch(name):
            return "attributes", f"a name must be {NAME_RULE} (got {name[:64]!r})"
        if is_reserved(name):
            return f"attributes.{name}", "is a reserved name (the server sets it); use another name"
        if isinstance(value, str) and len(value) > max_chars:
            return (
                f"attributes.{name}",
                f"must be at most {max_chars} characters (got {len(value)})",
            )
    return None
