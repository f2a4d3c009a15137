"""`gigcx serve` and `gigcx db upgrade`: run the chat API with uvicorn (one process or
several workers), and bring the conversation store's schema up to date."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import socket
import tempfile
from typing import Annotated

import typer
from pydantic import SecretStr

from gigcx.cli.common import ConfigOption, err, fail, out, settings_from, warn_empty_index
from gigcx.config import ENV_PREFIX, Settings, find_config


def serve(
    config: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: web.host).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: web.port).")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="Worker processes; more than one needs redis.url (events between them)."
        ),
    ] = 1,
    console: Annotated[
        bool,
        typer.Option(
            "--console",
            help="Turn on the expert console at /console; without web.console_token, with a "
            "new random token for this run (printed here).",
        ),
    ] = False,
) -> None:
    """Run the chat API (and its docs at /docs) with uvicorn."""
    settings = settings_from(config)
    host = host or settings.web.host
    port = port or settings.web.port
    # Before anything slow (the index, the embedding model): a clash is said at once.
    _check_port_free(host, port)
    import uvicorn

    from gigcx.connectors.web import create_app

    made_token = None
    if console and settings.web.console_token is None:
        made_token = secrets.token_urlsafe(16)
        web = settings.web.model_copy(update={"console_token": SecretStr(made_token)})
        settings = settings.model_copy(update={"web": web})
        os.environ[f"{ENV_PREFIX}WEB__CONSOLE_TOKEN"] = made_token  # read by each worker
    if workers > 1 and settings.redis.url is None:
        raise fail(
            f"--workers {workers} needs redis.url in gigcx.yaml (or GIGCX_REDIS__URL): the "
            "worker processes share events and rate limits through Redis"
        )
    _check_services(settings)
    if not settings.web.widget_keys:
        err.print(
            "[yellow]warning:[/] web.widget_keys is empty: no widget can start a conversation. "
            "Add a key to gigcx.yaml."
        )
    if workers > 1 and settings.store.sqlite_path is not None:
        err.print(
            "[yellow]note:[/] several workers on SQLite take turns writing; use PostgreSQL "
            "(store.url) for real scale."
        )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    address = f"http://{host}:{port}"
    err.print(f"Demo shop with the widget: {address}/ · API docs: {address}/docs")
    if made_token is not None:
        err.print(f"Expert console: {address}/console · token for this run: {made_token}")
    elif settings.web.console_token is not None:
        err.print(f"Expert console: {address}/console · token: web.console_token")
    network = {
        "host": host,
        "port": port,
        "log_level": "info",
        # create_app applies web.trusted_proxies itself, under any server: one place
        # decides whose X-Forwarded-For is believed.
        "proxy_headers": False,
        # Chat events are a few hundred bytes: compressing each one cost the event loop a
        # twentieth of its time under load and saves little on the wire.
        "ws_per_message_deflate": False,
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **network)
        return
    found = find_config(config)
    if found is not None:
        os.environ[f"{ENV_PREFIX}CONFIG"] = str(found.resolve())  # read by each worker
    # Each worker's embedding model would otherwise use every core, and N workers would
    # fight over them; set OMP_NUM_THREADS yourself to choose otherwise.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    with tempfile.TemporaryDirectory(prefix="gigcx-metrics-") as metrics_dir:
        # Each worker writes its metrics here; /metrics adds them up (see gigcx.metrics).
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
        uvicorn.run(
            "gigcx.connectors.web:app_from_environment",
            factory=True,
            workers=workers,
            **network,
        )


def _check_port_free(host: str, port: int) -> None:
    """Fail in one line, naming the port and how to pick another, if `host:port` cannot be
    listened on; uvicorn would say so only after the app has loaded the embedding model."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise fail(f"cannot listen on {host!r} (web.host or --host): {error.strerror}") from None
    family, kind, proto, _name, address = addresses[0]
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: a port left in TIME_WAIT by a server just stopped is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                why = "is already in use (another gigcx serve or make demo still running?)"
            elif error.errno == errno.EACCES:
                why = "needs root (ports below 1024 are privileged)"
            else:
                why = f"cannot be listened on ({error.strerror})"
            other = _suggested_port(port)
            raise fail(
                f"port {port} on {host} {why}. Pick another with --port, e.g. "
                f"`gigcx serve --port {other}` (`make demo PORT={other}`), or set web.port "
                "in gigcx.yaml."
            ) from None


def _suggested_port(port: int) -> int:
    """The first port after `port` that nothing listens on (on this machine)."""
    for candidate in range(port + 1, min(port + 50, 65535)):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return candidate
    return 8081


def db_upgrade(config: ConfigOption = None) -> None:
    """Apply the store's migrations (the server also does this when it starts)."""
    from gigcx.store import StoreUnavailable, create_engine, upgrade_database

    settings = settings_from(config)

    async def upgrade() -> None:
        engine = create_engine(settings.store)
        try:
            await upgrade_database(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(upgrade())
    except StoreUnavailable as error:
        raise fail(str(error)) from None
    out.print(f"The conversation store is up to date ({settings.store.url.split('://')[0]}).")


def _check_services(settings: Settings) -> None:
    """Fail now, in one line, if the store, Redis or the knowledge index cannot be used
    (rather than in each worker's start-up traceback); warn if the index is empty."""
    from gigcx.app import RedisUnavailable, start
    from gigcx.knowledge import KnowledgeIndexError
    from gigcx.store import StoreUnavailable

    async def chunks_in_index() -> int:
        runtime = await start(settings)
        try:
            return await asyncio.to_thread(runtime.index.count)
        finally:
            await runtime.close()

    try:
        count = asyncio.run(chunks_in_index())
    except (StoreUnavailable, RedisUnavailable, KnowledgeIndexError) as error:
        raise fail(str(error)) from None
    if count == 0:
        warn_empty_index()
