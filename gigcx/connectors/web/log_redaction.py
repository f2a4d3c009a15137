"""Keeps secrets that arrive in a URL's query string (`?token=...`) out of uvicorn's log lines.

The API never asks for a secret in a URL, but an old widget or a careless client may still
send one, and uvicorn logs every request's path with its query string; this filter is the
second line of defence.
"""

from __future__ import annotations

import logging
import re

# Any query parameter whose name ends in "token" (token=, access_token=, ...).
_TOKEN_IN_QUERY = re.compile(r"([?&][^=&\s\"]*token=)[^&\s\"]*", re.IGNORECASE)
# uvicorn.access logs HTTP requests; uvicorn.error logs each WebSocket handshake's path.
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact_tokens(text: str) -> str:
    """`text` with the value of every `...token=` query parameter replaced by [redacted]."""
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", text)


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
