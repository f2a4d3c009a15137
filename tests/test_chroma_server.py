"""The knowledge index on a Chroma server (`chroma run`), chosen by configuration alone."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gigcx.cli import app

runner = CliRunner()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = free_port()
    process = subprocess.Popen(
        [
            chroma,
            "run",
            "--path",
            str(tmp_path / "chroma-data"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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


def test_sync_and_search_against_a_chroma_server(
    brand_dir: Path, chroma_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIGCX_INDEX__URL", chroma_server)
    config = str(brand_dir / "gigcx.yaml")

    first = runner.invoke(app, ["knowledge", "sync", "-c", config, "--json"])
    second = runner.invoke(app, ["knowledge", "sync", "-c", config, "--json"])
    search = runner.invoke(
        app, ["knowledge", "search", "-c", config, "--json", "do you ship to canada"]
    )

    assert first.exit_code == 0 and '"added": 21' in first.output
    assert '"unchanged": 21' in second.output and '"chunks_embedded": 0' in second.output
    assert '"path": "general/shipping.md"' in search.output
    assert not (brand_dir / ".gigcx").exists(), "a server index must not write a local folder"
