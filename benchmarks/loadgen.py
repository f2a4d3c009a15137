"""Simulated customers for the load benchmarks: each opens a conversation, listens on a real
WebSocket, asks its question(s) and waits for the bot's reply (or the handover notice) to be
pushed. Whatever a customer was acknowledged or shown is checked against the store after
the run, so a lost message is counted, not guessed."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

KEY = "kestrel-demo-widget-key"
CASES = Path(__file__).resolve().parent.parent / "examples" / "kestrel" / "cases.jsonl"


def questions() -> list[tuple[str, bool]]:
    """(first message, whether the example brand's bot should escalate it), from the cases."""
    found = []
    for line in CASES.read_text().splitlines():
        case = json.loads(line)
        found.append((case["messages"][0], case["expect"] == "escalate"))
    return found


def customer_question(asked: list[tuple[str, bool]], n: int) -> str:
    """Customer n's question: a case's first message, numbered so that no two customers ask
    the very same text. The bot embeds a text once and remembers it for a while; 1,000
    customers asking the 50 cases' exact words would measure that memory, not the model."""
    return f"{asked[n % len(asked)][0]} ({n})"


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass
class Chat:
    """One customer's conversation, as they saw it."""

    question: str
    conversation_id: str = ""
    token: str = ""
    started_at: float = 0.0
    acknowledged: list[int] = field(default_factory=list)  # seqs the API answered 201 for
    pushed: list[int] = field(default_factory=list)  # seqs the WebSocket delivered
    reply_latency: float | None = None  # from sending the question to the reply pushed
    post_latency: float | None = None  # from sending the question to its POST answered
    escalated: bool = False
    error: str | None = None


async def run_chat(
    http: httpx.AsyncClient,
    ws_base: str,
    question: str,
    timeout: float = 60.0,
    together: asyncio.Barrier | None = None,
) -> Chat:
    """Open a conversation, ask `question`, wait for the bot's answer or handover. With
    `together`, every chat connects first and they all ask at once."""
    chat = Chat(question, started_at=time.perf_counter())
    step = "create"  # what the customer was doing, named in an error
    try:
        created = await http.post("/v1/brands/kestrel/conversations", json={"widget_key": KEY})
        if created.status_code != 201:
            chat.error = f"create: HTTP {created.status_code}"
            return chat
        chat.conversation_id = created.json()["conversation_id"]
        chat.token = created.json()["token"]
        step = "connect"
        url = f"{ws_base}/v1/conversations/{chat.conversation_id}/ws"
        # The token travels as a subprotocol, as the widget sends it: never in the URL.
        protocols = ["gigcx.v1", f"token.{chat.token}"]
        async with websockets.connect(url, subprotocols=protocols, open_timeout=timeout) as socket:
            await asyncio.wait_for(socket.recv(), timeout)  # the state on connect
            if together is not None:
                await asyncio.wait_for(together.wait(), timeout * 5)
            sent_at = time.perf_counter()
            step = "message"
            posted = await http.post(
                f"/v1/conversations/{chat.conversation_id}/messages",
                json={"text": question},
                headers={"Authorization": f"Bearer {chat.token}"},
            )
            chat.post_latency = time.perf_counter() - sent_at
            if posted.status_code != 201:
                chat.error = f"message: HTTP {posted.status_code}"
                return chat
            body = posted.json()
            chat.escalated = body["state"] != "bot"
            chat.acknowledged.append(body["message"]["seq"])
            chat.acknowledged += [reply["seq"] for reply in body["replies"]]
            step = "reply"
            await asyncio.wait_for(_until_reply(socket, chat, sent_at), timeout)
    except (httpx.HTTPError, OSError, websockets.WebSocketException, TimeoutError) as error:
        chat.error = f"{step}: {type(error).__name__}: {error}"[:200]
    return chat


async def _until_reply(socket: Any, chat: Chat, sent_at: float) -> None:
    async for raw in socket:
        event = json.loads(raw)
        if event["type"] != "message.created":
            continue
        message = event["message"]
        chat.pushed.append(message["seq"])
        if message["author"] == "bot":
            chat.reply_latency = time.perf_counter() - sent_at
            return


async def count_lost(http: httpx.AsyncClient, chats: list[Chat]) -> int:
    """Messages a customer was acknowledged or shown that the store does not have, plus
    stored messages up to the reply that the WebSocket never pushed."""
    lost = 0
    for chat in chats:
        if not chat.conversation_id or not chat.acknowledged:
            continue
        listed = await http.get(
            f"/v1/conversations/{chat.conversation_id}/messages",
            headers={"Authorization": f"Bearer {chat.token}"},
        )
        stored = {m["seq"] for m in listed.json()["messages"]}
        lost += len(set(chat.acknowledged) - stored)
        if chat.reply_latency is not None:
            upto = max(chat.pushed)
            lost += len({s for s in stored if s <= upto} - set(chat.pushed))
    return lost
