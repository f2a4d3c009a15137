"""Keeps conversation tokens that a client puts in a URL out of uvicorn's log lines.

The API never asks for a secret in a URL, but an old widget or a careless client may still
send one, and uvicorn logs every request's path with its query string; this filter is the
second line of defence.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

REDACTED = "[redacted]"
# A parameter's name starts after ?, & or ;, or / in a path, raw or percent-encoded: uvicorn
# logs the path re-encoded, so a ";token=" in a path arrives as "%3Btoken%3D".
_START = r"(?:[?&;/]|%(?:3[bBfF]|26|2[fF]))"
_EQUALS = r"(?:=|%3[dD])"
_NAME_THEN_EQUALS = re.compile(rf"{_START}((?:(?!{_START}|{_EQUALS})[^\s\"])*){_EQUALS}")
# A value runs to the next raw & or ; (an encoded one is part of it) or the end of the URL:
# hiding too much of a URL is better than showing part of a secret.
_VALUE_END = re.compile(r"[&;\s\"]")
# A conversation token is secrets.token_urlsafe(32): 43 base64url characters. Standing alone
# in a URL, it is most likely a token sent where the conversation id goes, so it is hidden
# too. Conversation and handoff ids (32 hex digits) and words or slugs (one case) never look
# like it; a real token lacks a capital or a small letter about once in a billion.
_B64 = "[A-Za-z0-9_-]"
_BARE_TOKEN = re.compile(rf"(?:(?<!{_B64})|(?<=%[0-9A-Fa-f]{{2}})){_B64}{{43}}(?!{_B64})")
# uvicorn.access logs HTTP requests; uvicorn.error logs each WebSocket handshake's path.
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error")


def _names_a_token(name: str) -> bool:
    """True for a parameter name that ends in "token" once decoded, in any case or spelling
    (token, %74oken, access_token, Access-Token)."""
    for _ in range(3):  # a name encoded twice (%2574oken) as well
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return re.sub(r"[^0-9a-z]", "", name.lower()).endswith("token")


def _unless_mixed_case(found: re.Match[str]) -> str:
    run = found[0]
    looks_random = any(c.isupper() for c in run) and any(c.islower() for c in run)
    return REDACTED if looks_random else run


def redact_tokens(text: str) -> str:
    """`text` with the value of every parameter named `...token` replaced by [redacted], and
    any word shaped like a conversation token too."""
    kept: list[str] = []
    done = 0
    for found in _NAME_THEN_EQUALS.finditer(text):
        if found.start() < done or not _names_a_token(found[1]):
            continue  # inside a value already hidden, or not a token
        kept.append(text[done : found.end()] + REDACTED)
        end = _VALUE_END.search(text, found.end())
        done = end.start() if end is not None else len(text)
    kept.append(text[done:])
    return _BARE_TOKEN.sub(_unless_mixed_case, "".join(kept))


class TokenRedaction(logging.Filter):
    """Rewrites a record's message and arguments; it never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        # Keep the arguments a tuple of the same length: uvicorn's access formatter unpacks it.
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_tokens(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def redact_tokens_in_server_logs() -> None:
    """Add the filter to uvicorn's loggers, once per process. Filters on a logger survive
    uvicorn's logging setup (dictConfig replaces handlers, not filters), so this works
    whether it runs before or after it."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, TokenRedaction) for existing in logger.filters):
            logger.addFilter(TokenRedaction())
