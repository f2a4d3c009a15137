"""The web server: `create_app(settings)` gives a FastAPI app serving one brand's chat API
(OpenAPI docs at /docs), with the HTTP endpoints of every channel the settings turn on.

It knows no channel by name: each enabled channel plugin (`gigcx.plugins`) is created once
the runtime is up, its router mounted, and it is started and stopped with the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

import gigcx
from gigcx.app import GigCX, start
from gigcx.config import Settings, load_settings
from gigcx.connectors.web import admin, console, health, pages, websocket
from gigcx.connectors.web.body_size import BodySizeLimit
from gigcx.connectors.web.log_redaction import redact_tokens_in_server_logs
from gigcx.connectors.web.request_metrics import RequestMetrics
from gigcx.connectors.web.routes import router
from gigcx.plugins import Channel
from gigcx.validation import field_problems

log = logging.getLogger(__name__)
# Python's default (700, 10, 10) runs a full collection every 70,000 net allocations; under
# load (a thousand open connections, each turn's short-lived objects) that was a sixth of
# the event loop's time. Collecting the young less often costs a little memory.
GC_THRESHOLDS = (20_000, 20, 50)
NOT_JSON = "request body is not valid JSON"


def create_app(settings: Settings, runtime: GigCX | None = None) -> FastAPI:
    """The chat API for `settings`' brand; with no `runtime`, it starts (and closes) its own."""
    # Here, because every way of serving the app (gigcx serve, each --workers process,
    # uvicorn --factory, the tests) builds it through this function.
    redact_tokens_in_server_logs()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            app.state.gigcx = runtime
            yield
            return
        started = await start(settings)
        await started.warm_up()  # a failing embedding endpoint leaves it not ready, not down
        # What is loaded by now (the model, the libraries, the knowledge) lives as long as the
        # server: moved out of the collector's sight, so a full collection under load scans
        # the requests' objects, not millions of the model's.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        app.state.gigcx = started
        stop = asyncio.Event()
        sweeps = asyncio.create_task(
            started.escalations.run_sweeps(stop, settings.escalation.sweep_seconds)
        )
        running: list[Channel] = []
        try:
            await _start_channels(app, started, running)
            yield
        finally:
            stop.set()
            await sweeps
            for channel in reversed(running):
                await channel.stop()
            await started.close()

    # /docs and /redoc from files installed with the package (fastapi-offline ships Swagger
    # UI and ReDoc), not from a CDN: the docs work on a machine with no internet.
    app = FastAPIOffline(
        title=f"gigcx chat API — {settings.display_name}",
        version=gigcx.__version__,
        description="Conversations between a brand's customers, its AI front line and its experts.",
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.gigcx = runtime
    app.state.web = settings.web  # the limits this app enforces
    app.state.web_brand = settings.brand
    # Inside CORS, so a browser can read the 413.
    app.add_middleware(BodySizeLimit, max_bytes=settings.web.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.web.allowed_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
    )
    app.state.channels = {}  # name -> Channel, once the server has started them
    app.include_router(router)
    app.include_router(websocket.router)
    # The expert console is the web server's own page (no channel of its own: it drives the
    # same calls as any expert channel, and is on whenever web.console_token is set).
    app.include_router(console.router)
    app.include_router(pages.router)
    app.include_router(admin.router)  # /admin, the brand team's pages; off without web.admin_token
    app.include_router(health.router)
    app.add_middleware(RequestMetrics)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    # Starlette's class, so FastAPI's own errors (its 400 for an unreadable body) come here too.
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    # Outermost, so the per-address limits and the logs see the customer's address when a
    # trusted load balancer says it (X-Forwarded-For), whatever server runs the app: uvicorn
    # would otherwise trust only 127.0.0.1, and `gigcx serve` turns uvicorn's copy off.
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.web.trusted_proxies)
    return app


def app_from_environment() -> FastAPI:
    """The app of each worker process of `gigcx serve --workers N` (or of
    `uvicorn --factory gigcx.connectors.web:app_from_environment`): settings from the
    file named by GIGCX_CONFIG (else ./gigcx.yaml) and the environment."""
    return create_app(load_settings())


async def _start_channels(app: FastAPI, runtime: GigCX, running: list[Channel]) -> None:
    """Create each enabled channel, mount its endpoints and start it (`running` gets those
    started, to be stopped in reverse order)."""
    for enabled in runtime.channels:
        channel = enabled.plugin.create(runtime, enabled.settings)
        if channel.router is not None:
            # Before the server takes its first request: the lifespan runs first.
            app.include_router(channel.router)
        await channel.start()
        running.append(channel)
        app.state.channels[enabled.name] = channel
        log.info("channel %s (%s) started", enabled.name, enabled.plugin.kind)


async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    problems = []
    errors = []
    for problem in field_problems(error.errors(), leave_out={"body"}, whole="body"):
        location, message = problem.location, problem.message
        if problem.kind == "json_invalid":
            message = NOT_JSON
            location = "body"
        problems.append(f"{location}: {message}")
        errors.append({"type": problem.kind, "loc": list(problem.loc), "msg": message})
    return JSONResponse(status_code=422, content={"detail": "; ".join(problems), "errors": errors})


async def _http_error(_request: Request, error: HTTPException) -> JSONResponse:
    if error.status_code == 400 and error.__cause__ is not None:
        # FastAPI's 400 for a JSON body it could not read (not UTF-8, nested too deep):
        # the same mistake as a syntax error, so the same 422 and message.
        return JSONResponse(status_code=422, content={"detail": f"body: {NOT_JSON}"})
    return JSONResponse(
        status_code=error.status_code, content={"detail": error.detail}, headers=error.headers
    )
