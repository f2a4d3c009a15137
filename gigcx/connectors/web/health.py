"""Liveness (/healthz), readiness (/readyz, checking each dependency) and /metrics.

A load balancer sends traffic to a worker only while /readyz says 200. A channel being down
(Slack, a mail server) does not make a worker unready: customers are still served and the
outbox keeps what the channels must be told (its size is in the answer and in /metrics).
An answerer with a `check()` (a bot server it calls) is checked like the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gigcx import metrics
from gigcx.app import GigCX

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
CHECK_SECONDS = 3.0


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, str]:
    """The process is up (it may still be starting or cut off from a dependency)."""
    return {"status": "ok", "brand": request.app.state.web_brand}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 when the store, the event bus, the knowledge index and the embedding backend all
    answer; else 503, naming what failed. `knowledge` tells which index generation (which
    sync) the answers come from."""
    gigcx: GigCX | None = getattr(request.app.state, "gigcx", None)
    if gigcx is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    served: dict[str, Any] = {}
    checks = {
        "store": gigcx.store.ping,
        "events": gigcx.bus.check,
        "knowledge": lambda: _knowledge(gigcx, served),
        "embeddings": lambda: _embed(request.app.state, gigcx),
    }
    answerer_check = getattr(gigcx.front_line.answerer, "check", None)
    if answerer_check is not None:
        mode = gigcx.settings.bot.mode
        checks["answerer"] = lambda: _answerer(answerer_check, mode)
    results = dict(
        zip(checks, await asyncio.gather(*(_run(check) for check in checks.values())), strict=True)
    )
    ready = all(result.startswith("ok") for result in results.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": results}
    if served:
        body["knowledge"] = served
    if _has_outbox(gigcx):
        pending, oldest = await gigcx.store.outbox_backlog()
        body["outbox"] = {
            "pending": pending,
            "oldest": oldest.isoformat() if oldest is not None else None,
        }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    gigcx: GigCX | None = getattr(request.app.state, "gigcx", None)
    if gigcx is not None:
        counts = await gigcx.store.handoff_counts(gigcx.settings.brand)
        metrics.HANDOFFS_WAITING.set(counts["waiting"])
        metrics.HANDOFFS_ASSIGNED.set(counts["assigned"])
        if _has_outbox(gigcx):
            metrics.OUTBOX.set((await gigcx.store.outbox_backlog())[0])
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


def _has_outbox(gigcx: GigCX) -> bool:
    """Some enabled channel consumes the store's outbox."""
    return any(channel.plugin.outbox_kinds for channel in gigcx.channels)


async def _answerer(check: Callable[[], Awaitable[list[str]]], mode: str) -> str:
    problems = await check()
    if problems:
        # Logged in full; the public answer only names the answerer (see `_run`).
        log.warning("answerer %s not ready: %s", mode, "; ".join(problems))
        return f"failed: {mode} not ready"
    return "ok"


async def _knowledge(gigcx: GigCX, served: dict[str, Any]) -> str:
    """The index answers; `served` gets the generation searches are answered from now (a
    sync run by another process is picked up here too) and how many chunks it has."""
    index = gigcx.index
    generation, chunks = await asyncio.to_thread(
        lambda: (index.serving_generation(), index.count())
    )
    served.update(generation=generation, chunks=chunks)
    return f"ok ({chunks} chunks)" if chunks else "ok (empty: run gigcx knowledge sync)"


async def _embed(state: Any, gigcx: GigCX) -> str:
    """The embedding backend turns a question into a vector (an endpoint may be down).

    One probe at a time: while an endpoint hangs, each call waits on the same probe rather
    than leaving another thread behind.
    """
    probe: asyncio.Future[list[float]] | None = getattr(state, "embedding_probe", None)
    if probe is None or probe.done():
        if probe is not None and not probe.cancelled():
            probe.exception()  # seen: its result was reported, or it ran past a check
        embedder = gigcx.index.embedder
        probe = asyncio.ensure_future(asyncio.to_thread(embedder.embed_query, "readiness"))
        state.embedding_probe = probe
    await asyncio.shield(probe)
    return "ok"


async def _run(check: Callable[[], Awaitable[Any]]) -> str:
    try:
        result = await asyncio.wait_for(check(), CHECK_SECONDS)
    except TimeoutError:
        return f"failed: no answer within {CHECK_SECONDS:g} s"
    except Exception as error:
        # /readyz is public: an upstream's words (an API key echoed back, a host, a
        # database user) go to the log, and only the kind of failure to the caller.
        log.warning("readiness check failed: %s: %s", type(error).__name__, error)
        return f"failed: {type(error).__name__}"
    return result if isinstance(result, str) else "ok"
