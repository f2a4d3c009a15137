"""Real server processes for the scale-out tests: `chroma run`, `gigcx serve`, and throw-away
PostgreSQL databases. Each is started the way a user would start it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx

from tests.helpers.check_services import POSTGRES_ADMIN_URL, postgres_url

BIN = Path(sys.executable).parent
# The checkout these helpers belong to: its code is what the started servers run, not that of
# whichever checkout the venv's `gigcx` script was installed from.
CHECKOUT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database (its SQLAlchemy URL), dropped afterwards."""
    name = f"gigcx_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield postgres_url(name, driver="postgresql+asyncpg")
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.contextmanager
def chroma_server(data: Path) -> Iterator[str]:
    """`chroma run` on a free port (its URL), stopped afterwards."""
    chroma = shutil.which("chroma") or str(BIN / "chroma")
    port = free_port()
    command = [chroma, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("chroma server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


class ServerProcess:
    """`gigcx serve --config <config> --port <port>` in its own process, with `env` on top
    of this one's environment. Its output goes to `log`."""

    def __init__(
        self,
        config: Path,
        env: dict[str, str],
        log: Path,
        *,
        workers: int = 1,
        port: int | None = None,
    ) -> None:
        self.config = config
        self.env = {**os.environ, **env}
        path = [str(CHECKOUT), *filter(None, self.env.get("PYTHONPATH", "").split(os.pathsep))]
        self.env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
        self.log = log
        self.workers = workers
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        command = [str(BIN / "gigcx"), "serve", "--config", str(self.config)]
        command += ["--port", str(self.port), "--workers", str(self.workers)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # kill() reaches uvicorn's worker processes too
            )
        return self

    async def ready(self, timeout: float = 90.0) -> None:
        """Wait until /readyz says 200 (the store, Redis and the index all answer)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            while time.monotonic() < deadline:
                assert self.process is not None and self.process.poll() is None, self.output()
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise AssertionError(f"gigcx serve was not ready in {timeout} s:\n{self.output()}")

    def kill(self) -> None:
        """kill -9, as a crash would: no shutdown code runs."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
