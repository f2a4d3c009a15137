"""The server log never shows a conversation token, however a careless client puts it in a
URL: each request goes through uvicorn's own access-log call and formatter, as `gigcx serve`
logs it (the live test in test_web_live.py does the same through a real server)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from urllib.parse import unquote

import pytest
from uvicorn.logging import AccessFormatter, DefaultFormatter
from uvicorn.protocols.utils import get_path_with_query_string

from gigcx.connectors.web.log_redaction import redact_tokens_in_server_logs

# The shape of secrets.token_urlsafe(32), and of a conversation id (uuid4().hex).
TOKEN = "q3Zx-7KcVb_2mNwPz8RtYh4LsDf0GjUe1AoIiBn9XkE"
CID = "0f3c9a4b7e2d4c1a9b8e7f6a5d4c3b2a"


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    """What uvicorn's access and error loggers write, formatted as `gigcx serve` shows it."""
    redact_tokens_in_server_logs()
    output = io.StringIO()
    attached = []
    for name, formatter in [
        ("uvicorn.access", AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s')),
        ("uvicorn.error", DefaultFormatter("%(message)s")),
    ]:
        handler = logging.StreamHandler(output)
        handler.setFormatter(formatter)
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        attached.append((logger, handler, logger.level))
        logger.setLevel(logging.INFO)
    yield output
    for logger, handler, level in attached:
        logger.removeHandler(handler)
        logger.setLevel(level)


def log_request(target: str, status: int = 404) -> None:
    """Log an HTTP request for `target` (the raw request target) the way uvicorn does."""
    raw_path, _, query = target.partition("?")
    # uvicorn 0.55 and later log the raw path as sent (`raw_path`), older ones `path`.
    scope = {
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("latin1"),
        "query_string": query.encode("ascii"),
    }
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:50000",
        "GET",
        get_path_with_query_string(scope),  # type: ignore[arg-type]
        "1.1",
        status,
    )


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        pytest.param(f"/c/{CID}?token={TOKEN}", f"/c/{CID}?token=[redacted]", id="token="),
        pytest.param(
            f"/c/{CID}?%74oken={TOKEN}", f"/c/{CID}?%74oken=[redacted]", id="percent-encoded name"
        ),
        pytest.param(
            f"/c/{CID}?a=1%26%2574oken={TOKEN}",
            f"/c/{CID}?a=1%26%2574oken=[redacted]",
            id="encoded twice, after an encoded &",
        ),
        pytest.param(
            f"/c/{CID}?after=1;token={TOKEN}", f"/c/{CID}?after=1;token=[redacted]", id="a ;"
        ),
        pytest.param(
            f"/c/{CID}?access_token={TOKEN}&after=2",
            f"/c/{CID}?access_token=[redacted]&after=2",
            id="access_token",
        ),
        pytest.param(
            f"/c/{CID}?after=2&Access%5FToken={TOKEN}",
            f"/c/{CID}?after=2&Access%5FToken=[redacted]",
            id="Access%5FToken",
        ),
        pytest.param(
            f"/c/{CID};token={TOKEN}/messages",
            f"/c/{CID};token=[redacted]",
            id="token= in the path",
        ),
        pytest.param(
            f"/c/{TOKEN}/messages?after=3", "/c/[redacted]/messages?after=3", id="token as the id"
        ),
        pytest.param(f"/c/x%3B{TOKEN}", "/c/x%3B[redacted]", id="token after an escape"),
    ],
)
def test_a_token_anywhere_in_a_url_is_redacted_in_the_access_log(
    server_log: io.StringIO, target: str, shown: str
):
    log_request(target)
    line = server_log.getvalue()
    assert line == f'127.0.0.1:50000 - "GET {shown} HTTP/1.1" 404 Not Found\n'
    assert TOKEN not in line


def test_a_token_in_a_websocket_url_is_redacted_in_the_error_log(server_log: io.StringIO):
    scope = {
        "path": f"/c/{CID}/ws",
        "raw_path": f"/c/{CID}/ws".encode(),
        "query_string": f"after=0&%74oken={TOKEN}".encode(),
    }
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]',
        "127.0.0.1:50000",
        get_path_with_query_string(scope),  # type: ignore[arg-type]
    )
    assert server_log.getvalue() == (
        f'127.0.0.1:50000 - "WebSocket /c/{CID}/ws?after=0&%74oken=[redacted]" [accepted]\n'
    )


@pytest.mark.parametrize(
    "target",
    [
        f"/v1/conversations/{CID}/messages?after=12",
        f"/v1/console/handoffs/{CID}/claim",
        "/v1/brands/kestrel/widget?key=kestrel-demo-widget-key",
        "/help/how-to-pair-the-x2-headset-with-a-new-phone",  # 43 characters, but one case
        f"/c/{CID}?tokens=5&token_id=7",  # names that do not end in "token"
    ],
)
def test_ids_and_everything_else_in_a_url_stay_readable(server_log: io.StringIO, target: str):
    log_request(target, 200)
    assert server_log.getvalue() == f'127.0.0.1:50000 - "GET {target} HTTP/1.1" 200 OK\n'
