"""`gigcx ask` and `gigcx serve` as a user runs them."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import Result

from tests.helpers.processes import free_port
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


def test_serve_runs_the_chat_api_and_a_console_with_a_token_made_for_the_run(
    synced_brand: Path, tmp_path: Path
):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = shutil.which("gigcx", path=str(Path(sys.executable).parent))
    assert command is not None
    env = {**os.environ, "GIGCX_STORE__URL": f"sqlite:///{tmp_path / 'served.db'}"}
    env.pop("GIGCX_WEB__CONSOLE_TOKEN", None)
    log = tmp_path / "serve.log"
    config = str(synced_brand / "gigcx.yaml")
    with log.open("wb") as output:
        server = subprocess.Popen(
            [command, "serve", "--config", config, "--port", str(port), "--console"],
            env=env,
            stdout=output,
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

        # The console's token is made for this run and printed with where to log in.
        printed = " ".join(log.read_text().split())
        assert f"Expert console: {base}/console" in printed
        found = re.search(r"token for this run: (\S+)", printed)
        assert found is not None, printed
        console = f"{base}/v1/console/handoffs"
        signed_in = httpx.get(console, headers={"X-Console-Token": found.group(1)})
        assert signed_in.status_code == 200
        guessed = httpx.get(console, headers={"X-Console-Token": "kestrel-demo-console"})
        assert guessed.status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)
    output = log.read_text()
    assert "Uvicorn running" in output or "Application startup complete" in output


def _serve_two_workers(brand: Path) -> Result:
    """`gigcx serve --workers 2` on a free port: a `make demo` left running on the default
    port must not change what these tests see."""
    port = str(free_port())
    return gigcx("serve", "--config", str(brand / "gigcx.yaml"), "--workers", "2", "--port", port)


def test_serve_with_several_workers_needs_redis(synced_brand: Path):
    result = _serve_two_workers(synced_brand)
    assert result.exit_code != 0
    assert "--workers 2 needs redis.url" in " ".join(result.output.split())


def test_serve_names_an_unreachable_redis_before_starting(
    synced_brand: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("GIGCX_REDIS__URL", "redis://127.0.0.1:1/0")
    result = _serve_two_workers(synced_brand)
    assert result.exit_code != 0
    assert "cannot reach Redis at redis://127.0.0.1:1/0 (redis.url)" in " ".join(
        result.output.split()
    )
