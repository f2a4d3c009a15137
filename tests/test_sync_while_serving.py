"""A brand team edits its knowledge while `gigcx serve` runs on the local index folder, and
runs `gigcx knowledge sync` in another terminal, as the README says: the server answers
from the new content at once, without a restart and without an error."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gigcx.app import start
from gigcx.config import Settings, load_settings
from gigcx.connectors.web import create_app
from gigcx.knowledge import IndexUnavailable, KnowledgeIndex, open_index, sync_knowledge
from gigcx.knowledge.embeddings import create_embedder
from gigcx.knowledge.index import GENERATION_CHECK_SECONDS, MODEL_KEY
from tests.helpers.processes import BIN

KEY = "kestrel-demo-widget-key"
SHIPPING = """---
title: Shipping times and regions
tags: [shipping, delivery]
questions:
  - do you ship to canada
---
## Where we ship

We ship to the United States, Canada and {country}.
"""


def sync_in_another_process(config: Path) -> None:
    """`gigcx knowledge sync --config <config>`, in a terminal of its own."""
    done = subprocess.run(
        [str(BIN / "gigcx"), "knowledge", "sync", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def served(brand_dir: Path, tmp_path: Path) -> Settings:
    """The example brand, synced, with a store of its own (the index is a local folder)."""
    settings = load_settings(
        brand_dir / "gigcx.yaml", store={"url": f"sqlite:///{tmp_path / 'gigcx.db'}"}
    )
    sync_knowledge(settings.knowledge.path, open_index(settings))
    return settings


@pytest.fixture
async def chat(served: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The chat API of a running server, as the widget calls it."""
    runtime = await start(served)
    transport = httpx.ASGITransport(app=create_app(served, runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
    await runtime.close()


async def bot_turn(chat: httpx.AsyncClient, text: str) -> dict[str, Any]:
    """The bot's reply to `text`, the first message of a new conversation."""
    created = await chat.post("/v1/brands/kestrel/conversations", json={"widget_key": KEY})
    assert created.status_code == 201, created.text
    cid, token = created.json()["conversation_id"], created.json()["token"]
    turn = await chat.post(
        f"/v1/conversations/{cid}/messages",
        json={"text": text},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert turn.status_code == 201, turn.text
    [reply] = turn.json()["replies"]
    return dict(reply)


async def bot_reply(chat: httpx.AsyncClient, text: str) -> str:
    return str((await bot_turn(chat, text))["text"])


def cited(reply: dict[str, Any]) -> list[str]:
    return [citation["path"] for citation in reply["citations"]]


async def test_changed_added_and_removed_files_are_answered_at_once_and_readyz_says_so(
    brand_dir: Path, served: Settings, chat: httpx.AsyncClient
) -> None:
    knowledge = served.knowledge.path
    ready = await chat.get("/readyz")
    assert ready.status_code == 200, ready.text
    synced_first = ready.json()["knowledge"]["generation"]
    assert synced_first
    assert cited(await bot_turn(chat, "how do I clean my ear cushions?")) == [
        "general/cleaning-and-care.md"
    ]

    (knowledge / "general" / "shipping.md").write_text(SHIPPING.format(country="Japan"))
    (knowledge / "gift-cards.md").write_text("# Gift cards\n\nGift cards never expire.\n")
    (knowledge / "general" / "cleaning-and-care.md").unlink()
    sync_in_another_process(brand_dir / "gigcx.yaml")

    # The next questions, at once: changed, added, removed.
    assert "Canada and Japan" in await bot_reply(chat, "do you ship to canada?")
    gift_cards = await bot_turn(chat, "do gift cards expire?")
    assert cited(gift_cards) == ["gift-cards.md"] and "never expire" in gift_cards["text"]
    cushions = await bot_turn(chat, "how do I clean my ear cushions?")
    assert "general/cleaning-and-care.md" not in cited(cushions)
    assert "protein leather" not in cushions["text"]
    ready = await chat.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["knowledge"]["generation"] not in ("", synced_first)


async def test_a_customer_gets_the_new_answer_after_a_sync_in_another_terminal(
    brand_dir: Path, served: Settings, chat: httpx.AsyncClient
) -> None:
    shipping = served.knowledge.path / "general" / "shipping.md"
    assert "the United Kingdom" in await bot_reply(chat, "do you ship to canada?")

    for country in ("Mexico", "Japan"):  # and again: the server keeps up with every sync
        shipping.write_text(SHIPPING.format(country=country))
        sync_in_another_process(brand_dir / "gigcx.yaml")

        assert f"Canada and {country}" in await bot_reply(chat, "do you ship to canada?")


def test_searches_in_several_threads_never_fail_while_another_process_syncs(
    brand_dir: Path, served: Settings
) -> None:
    index = open_index(served)
    failures: list[Exception] = []
    stop = threading.Event()

    def search_until_stopped(searcher: KnowledgeIndex) -> None:
        while not stop.is_set():
            try:
                searcher.search("do you ship to canada", 3, include_internal=True)
            except Exception as error:
                failures.append(error)
                return

    searchers = [threading.Thread(target=search_until_stopped, args=(index,)) for _ in range(3)]
    for searcher in searchers:
        searcher.start()
    try:
        shipping = served.knowledge.path / "general" / "shipping.md"
        shipping.write_text(SHIPPING.format(country="Japan"))
        (served.knowledge.path / "gift-cards.md").write_text(
            "# Gift cards\n\nGift cards never expire.\n"
        )
        sync_in_another_process(brand_dir / "gigcx.yaml")
    finally:
        stop.set()
        for searcher in searchers:
            searcher.join(timeout=30)

    assert failures == []
    time.sleep(GENERATION_CHECK_SECONDS)  # the last sync may be newer than the last check
    assert "Canada and Japan" in index.search("do you ship to canada", 1)[0].text
    assert index.search("do gift cards expire", 1)[0].path == "gift-cards.md"


class UnreadableChroma:
    """A Chroma client whose reads fail every time, fresh or not (a damaged folder)."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def get_collection(self, name: str) -> Any:
        return UnreadableCollection({MODEL_KEY: self.model_id})


@dataclass
class UnreadableCollection:
    metadata: dict[str, str]

    def get(self, **_: object) -> Any:
        raise RuntimeError("Error executing plan: Internal error: Error finding id")


def test_an_index_unreadable_even_afresh_says_so_once_and_what_to_do(settings: Settings) -> None:
    embedder = create_embedder(settings.embeddings)
    opened: list[UnreadableChroma] = []

    def fresh_client() -> Any:
        opened.append(UnreadableChroma(embedder.model_id))
        return opened[-1]

    index = KnowledgeIndex(
        UnreadableChroma(embedder.model_id), "kestrel", embedder, "/srv/kestrel-index", fresh_client
    )

    with pytest.raises(IndexUnavailable) as raised:
        index.search("do you ship to canada", 3)

    assert len(opened) == 1, "reopened once, then gave up"
    message = str(raised.value)
    assert "/srv/kestrel-index" in message and "Error finding id" in message
    assert "gigcx knowledge sync --rebuild" in message
