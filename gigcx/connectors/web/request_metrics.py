"""Counting and timing every HTTP request by route template, as plain ASGI middleware.

Starlette's `BaseHTTPMiddleware` (what `@app.middleware("http")` makes) runs each request
through a task group and memory streams; on the message path that was a tenth of the event
loop's time under load. This one only wraps `send` to read the status.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gigcx import metrics


class RequestMetrics:
    """ASGI middleware: `gigcx_http_requests` and `gigcx_http_request_seconds` per route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app starts a response: an exception escaped it

        async def send_reading_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_reading_status)
        finally:
            # The router leaves the matched route in the scope it was given.
            template = getattr(scope.get("route"), "path", "unmatched")
            metrics.REQUESTS.labels(scope["method"], template, str(status)).inc()
            metrics.REQUEST_SECONDS.labels(template).observe(time.perf_counter() - started)
