"""The loop that makes Gig CX pay off, as its people live it: the bot escalates a question its
knowledge lacks, a gig expert answers it in the console and resolves, gigcx drafts a
knowledge entry (personal data masked), the brand team accepts it with the CLI, syncs, and
the bot now answers the same question and a paraphrase from the new entry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gigcx.config import Settings
from gigcx.insights.drafts import DraftError, accept_draft, edit_draft, reject_draft
from gigcx.knowledge import open_index, sync_knowledge
from tests.helpers.experts import ALEX, register_experts
from tests.helpers.live_server import LiveServer, live_server
from tests.test_console import KEY, TOKEN, with_console

BIN = Path(sys.executable).parent
QUESTION = "is there sidetone on the X2 headset when I'm on a call"
PARAPHRASE = "does my X2 let me hear my own voice during phone calls (sidetone)?"
ANSWER = (
    "Yes: in the Kestrel Connect app open Calls > Sidetone and pick Low, Medium or High; "
    "it is off by default. Questions? Write to alex.private@example.com"
)
EXPERT = {"X-Console-Token": TOKEN}


def gigcx_cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "gigcx"), *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def ask(http: httpx.AsyncClient, text: str) -> dict[str, Any]:
    """A new customer asks `text`; the bot's reply (with its decision)."""
    created = (await http.post("/v1/brands/kestrel/conversations", json={"widget_key": KEY})).json()
    posted = await http.post(
        f"/v1/conversations/{created['conversation_id']}/messages",
        json={"text": text},
        headers={"Authorization": f"Bearer {created['token']}"},
    )
    assert posted.status_code in (200, 201), posted.text
    return {"conversation_id": created["conversation_id"], **posted.json()}


def bot_reply(turn: dict[str, Any]) -> dict[str, Any]:
    [reply] = [m for m in turn["replies"] if m["author"] == "bot"]
    return reply


@pytest.fixture
async def served(settings: Settings) -> Any:
    """The brand's own server (its store is the one the CLI reads), console on."""
    sync_knowledge(settings.knowledge.path, open_index(settings))
    async with live_server(with_console(settings)) as live:
        await register_experts(live.runtime)
        yield live


async def test_an_expert_answer_becomes_knowledge_the_bot_answers_from(
    served: LiveServer, brand_dir: Path
) -> None:
    config = brand_dir / "gigcx.yaml"
    store = served.runtime.store
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:
        first = await ask(http, QUESTION)
        assert first["state"] == "waiting", first  # the knowledge has no answer: escalated
        [waiting] = (await http.get("/v1/console/handoffs", headers=EXPERT)).json()
        path = f"/v1/console/handoffs/{waiting['id']}"
        claimed = await http.post(
            f"{path}/claim", json={"expert_id": ALEX, "name": "Alex"}, headers=EXPERT
        )
        assert claimed.status_code == 200, claimed.text
        replied = await http.post(
            f"{path}/reply", json={"expert_id": ALEX, "text": ANSWER}, headers=EXPERT
        )
        assert replied.status_code == 201, replied.text
        resolved = await http.post(f"{path}/resolve", json={"expert_id": ALEX}, headers=EXPERT)
        assert resolved.status_code == 200, resolved.text

    # gigcx drafted the entry when the expert resolved: question, answer, product, masked.
    listed = gigcx_cli("knowledge", "drafts", "list", "--json", config=config)
    assert listed.returncode == 0, listed.stderr
    [draft] = json.loads(listed.stdout)
    assert draft["state"] == "pending"
    assert draft["question"] == QUESTION
    assert "Calls > Sidetone" in draft["answer"]
    assert "alex.private@example.com" not in draft["answer"]
    assert "[e-mail]" in draft["answer"]
    assert draft["product"] == "x2"
    assert draft["expert"] == ALEX
    handoff = await store.get_handoff(waiting["id"])
    assert handoff.first_reply_at is not None  # the report's time to first reply

    shown = gigcx_cli("knowledge", "drafts", "show", draft["id"][:8], config=config)
    assert shown.returncode == 0, shown.stderr
    assert QUESTION in shown.stdout and "pending" in shown.stdout

    accepted = gigcx_cli("knowledge", "drafts", "accept", draft["id"][:8], config=config)
    assert accepted.returncode == 0, accepted.stderr
    assert "drafts" in accepted.stdout and "gigcx knowledge sync" in accepted.stdout
    [written] = (brand_dir / "knowledge" / "drafts").glob("*.faq.yml")
    text = written.read_text(encoding="utf-8")
    assert text.startswith("# Drafted by gigcx from a gig expert's answer")
    [entry] = yaml.safe_load(text)
    assert entry["question"] == QUESTION and entry["product"] == "x2"
    # Nothing the team wrote was touched; a second accept is refused.
    again = gigcx_cli("knowledge", "drafts", "accept", draft["id"][:8], config=config)
    assert again.returncode != 0 and "accepted already" in again.stderr

    synced = gigcx_cli("knowledge", "sync", config=config)
    assert synced.returncode == 0, synced.stderr

    async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:
        for text in (QUESTION, PARAPHRASE):
            turn = await ask(http, text)
            assert turn["state"] == "bot", (text, turn)
            reply = bot_reply(turn)
            assert "Calls > Sidetone" in reply["text"], (text, reply)
            assert any("drafts/" in c.get("path", "") for c in reply["citations"]), reply


async def test_drafts_are_edited_checked_and_decided_once(
    served: LiveServer, brand_dir: Path
) -> None:
    runtime = served.runtime
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:
        await ask(http, QUESTION)
        [waiting] = (await http.get("/v1/console/handoffs", headers=EXPERT)).json()
    handoff_id = waiting["id"]
    await runtime.escalations.claim(handoff_id, ALEX)
    await runtime.escalations.send_reply(handoff_id, ALEX, "It works over Bluetooth audio.")
    await runtime.escalations.resolve(handoff_id, ALEX)
    [draft] = await runtime.store.drafts("kestrel")
    # Resolving is announced to every worker; drafting again gives the same draft.
    assert runtime.escalations.on_resolved is not None
    await runtime.escalations.on_resolved(await runtime.store.get_handoff(handoff_id))
    assert [d.id for d in await runtime.store.drafts("kestrel")] == [draft.id]

    with pytest.raises(DraftError, match="answer"):
        await edit_draft(
            runtime.store,
            "kestrel",
            draft.id,
            question="q?",
            alternatives=[],
            answer=" ",
            product=None,
            tags=[],
        )
    edited = await edit_draft(
        runtime.store,
        "kestrel",
        draft.id,
        question="  Does the X1   pair with a Switch? ",
        alternatives=["x1 and switch", "X1 and Switch", ""],
        answer="Yes, over Bluetooth audio.",
        product="x1",
        tags=["compatibility"],
    )
    assert edited.question == "Does the X1 pair with a Switch?"
    assert edited.alternatives == ["x1 and switch"]  # blank and repeated lines dropped
    rejected = await reject_draft(runtime.store, "kestrel", draft.id, by="maya")
    assert rejected.state == "rejected" and rejected.decided_by == "maya"
    with pytest.raises(DraftError, match="rejected already"):
        await accept_draft(runtime.store, runtime.settings, draft.id, by="maya")
    assert not (brand_dir / "knowledge" / "drafts").exists()  # nothing written
