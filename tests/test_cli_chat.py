"""`gigcx ask` and `gigcx serve` as a user runs them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.test_cli import gigcx


def test_ask_shows_answers_sources_and_decisions_turn_by_turn(synced_brand: Path):
    result = gigcx(
        "ask",
        "--config",
        str(synced_brand / "gigcx.yaml"),
        "-m",
        "how long does the X2 battery last?",
        "-m",
        "and what about the other model?",
        "-m",
        "my order 55012 never arrived",
        "-m",
        "hello?",
    )
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "[1] X2 battery life and charging — x2/battery.md" in flat
    assert "[1] X1 battery life and charging — x1/battery.md" in flat
    assert "escalate · staff_topic → staff" in flat
    assert "a person has it, the bot stays silent" in flat
    # Conversations from `ask` go to a throw-away store, not the brand's.
    assert not (synced_brand / ".gigcx" / "gigcx.db").exists()


def test_serve_runs_the_chat_api_with_uvicorn(synced_brand: Path, tmp_path: Path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = shutil.which("gigcx", path=str(Path(sys.executable).parent))
    assert command is not None
    env = {**os.environ, "GIGCX_STORE__URL": f"sqlite:///{tmp_path / 'served.db'}"}
    server = subprocess.Popen(
        [command, "serve", "--config", str(synced_brand / "gigcx.yaml"), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            raise AssertionError("gigcx serve did not come up")
        created = httpx.post(
            f"{base}/v1/brands/kestrel/conversations",
            json={"widget_key": "kestrel-demo-widget-key"},
        ).json()
        turn = httpx.post(
            f"{base}/v1/conversations/{created['conversation_id']}/messages",
            json={"text": "are the buds waterproof?"},
            headers={"Authorization": f"Bearer {created['token']}"},
            timeout=30,
        ).json()
        assert turn["replies"][0]["citations"][0]["path"] == "faq/general.faq.yml"
        assert (tmp_path / "served.db").exists()
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
    assert "Uvicorn running" in output or "Application startup complete" in output


def test_serve_with_several_workers_needs_redis(synced_brand: Path):
    result = gigcx("serve", "--config", str(synced_brand / "gigcx.yaml"), "--workers", "2")
    assert result.exit_code != 0
    assert "--workers 2 needs redis.url" in " ".join(result.output.split())


def test_serve_names_an_unreachable_redis_before_starting(
    synced_brand: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("GIGCX_REDIS__URL", "redis://127.0.0.1:1/0")
    result = gigcx("serve", "--config", str(synced_brand / "gigcx.yaml"), "--workers", "2")
    assert result.exit_code != 0
    assert "cannot reach Redis at redis://127.0.0.1:1/0 (redis.url)" in " ".join(
        result.output.split()
    )
