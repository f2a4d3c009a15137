"""The embeddings endpoint (an OpenAI-compatible one, stood in locally) goes down: a
customer's question is handed to a person instead of failing, and a server started during
the outage starts, says it is not ready and why, and is ready once the endpoint is back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gigcx.app import GigCX, start
from gigcx.config import Settings, load_settings
from gigcx.connectors.web import create_app
from gigcx.knowledge import open_index, sync_knowledge
from gigcx.knowledge.embeddings import EmbeddingError
from tests.helpers.live_server import live_server
from tests.helpers.openai_server import OpenAIEmbeddingsServer
from tests.test_embedding_backends import use_openai

KEY = "kestrel-demo-widget-key"


@pytest.fixture
def endpoint() -> Iterator[OpenAIEmbeddingsServer]:
    with OpenAIEmbeddingsServer() as server:
        yield server


@pytest.fixture
def remote_embeddings(
    brand_dir: Path, tmp_path: Path, endpoint: OpenAIEmbeddingsServer
) -> Settings:
    """The example brand embedded by the endpoint, synced while it was up."""
    settings = load_settings(
        use_openai(brand_dir, endpoint.base_url),
        store={"url": f"sqlite:///{tmp_path / 'gigcx.db'}"},
    )
    assert sync_knowledge(settings.knowledge.path, open_index(settings)).ok
    return settings


@pytest.fixture
async def runtime(remote_embeddings: Settings) -> AsyncIterator[GigCX]:
    started = await start(remote_embeddings)
    yield started
    await started.close()


async def start_chat(chat: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    created = await chat.post("/v1/brands/kestrel/conversations", json={"widget_key": KEY})
    assert created.status_code == 201, created.text
    body = created.json()
    return body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}


async def test_a_question_the_bot_cannot_search_for_goes_to_a_person(
    runtime: GigCX, endpoint: OpenAIEmbeddingsServer, caplog: Any
):
    transport = httpx.ASGITransport(app=create_app(runtime.settings, runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as chat:
        cid, auth = await start_chat(chat)
        endpoint.fail_with = 500
        with caplog.at_level(logging.ERROR, logger="gigcx.bot.frontline"):
            turn = await chat.post(
                f"/v1/conversations/{cid}/messages",
                json={"text": "how do I pair my X2 with my phone?"},
                headers=auth,
            )
        assert turn.status_code == 201, turn.text
        [notice] = turn.json()["replies"]
        assert notice["text"].startswith("Sorry, I can't look that up right now.")
        assert "a Kestrel Audio product expert" in notice["text"]
        assert turn.json()["state"] == "waiting"
        listed = (await chat.get(f"/v1/conversations/{cid}/messages", headers=auth)).json()
        assert [m["author"] for m in listed["messages"]] == ["customer", "bot"]
        assert listed["state"] == "waiting"

    handoff = await runtime.store.open_handoff_for(cid)
    assert handoff is not None and handoff.reason == "bot_error"
    assert "could not search the knowledge base" in handoff.packet["reason_text"]
    [logged] = [r for r in caplog.records if "bot_error" in r.getMessage()]
    assert logged.exc_info is not None and isinstance(logged.exc_info[1], EmbeddingError)


async def ready_status(http: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await http.get("/readyz")
    return response.status_code, response.json()


async def test_a_server_starts_during_an_outage_and_is_ready_when_the_endpoint_is_back(
    remote_embeddings: Settings, endpoint: OpenAIEmbeddingsServer
):
    endpoint.fail_with = 503
    async with (
        live_server(remote_embeddings) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        status, body = await ready_status(http)
        assert status == 503 and body["status"] == "not ready"
        # What failed, not the upstream's words (they may echo a key or name a host): those
        # are in the server's log.
        assert body["checks"]["embeddings"] == "failed: EmbeddingError"
        assert body["checks"]["store"] == "ok"

        endpoint.fail_with = None
        deadline = time.monotonic() + 30
        while status != 200:
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.2)
            status, body = await ready_status(http)
        assert body["checks"]["embeddings"] == "ok"
        assert body["knowledge"]["chunks"] > 0 and body["knowledge"]["generation"]

        # And it answers.
        cid, auth = await start_chat(http)
        turn = await http.post(
            f"/v1/conversations/{cid}/messages",
            json={"text": "do you ship to canada?"},
            headers=auth,
        )
        assert turn.status_code == 201 and turn.json()["replies"]
