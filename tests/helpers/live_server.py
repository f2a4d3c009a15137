"""The chat API under a real uvicorn server on a free port, in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from gigcx.app import GigCX
from gigcx.config import Settings
from gigcx.connectors.web import create_app


@dataclass
class LiveServer:
    address: str
    app: FastAPI
    server: uvicorn.Server

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def runtime(self) -> GigCX:
        return self.app.state.gigcx  # type: ignore[no-any-return]

    def drop_websockets(self) -> int:
        """Cut every WebSocket from the server's side, as a network drop would."""
        dropped = 0
        for connection in list(self.server.server_state.connections):
            if "WebSocket" in type(connection).__name__ and connection.transport is not None:
                connection.transport.abort()
                dropped += 1
        return dropped


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def live_server(settings: Settings, port: int | None = None) -> AsyncIterator[LiveServer]:
    """`gigcx serve`'s app (it starts its own runtime) on 127.0.0.1 while inside the block."""
    app = create_app(settings)
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(600):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield LiveServer(f"127.0.0.1:{port}", app, server)
    finally:
        server.should_exit = True
        await task
