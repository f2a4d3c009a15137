"""The chat API through a real uvicorn server on a free port, with a real WebSocket client:
live answers, an expert's reply pushed live, resuming after a reconnect, and a `gigcx serve`
whose log never shows a conversation token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from gigcx.app import GigCX
from gigcx.config import Settings
from gigcx.events import MESSAGE_CREATED, MESSAGE_DRAFT, Event
from tests.helpers.experts import ALEX, register_experts
from tests.helpers.live_server import live_server
from tests.helpers.processes import ServerProcess

KEY = "kestrel-demo-widget-key"


def widget_socket(address: str, cid: str, token: str, after: int | str = 0) -> Any:
    """A WebSocket opened the way widget.js opens it: the token as a subprotocol, never in
    the URL."""
    return websockets.connect(
        f"ws://{address}/v1/conversations/{cid}/ws?after={after}",
        subprotocols=["gigcx.v1", f"token.{token}"],
    )


async def new_conversation(http: httpx.AsyncClient) -> tuple[str, str]:
    """A conversation opened the way the widget opens one: its id and token."""
    created = await http.post("/v1/brands/kestrel/conversations", json={"widget_key": KEY})
    assert created.status_code == 201
    return created.json()["conversation_id"], created.json()["token"]


async def nothing_more(socket_: Any) -> None:
    """Nothing else is pushed on `socket_` (within half a second)."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(socket_.recv(), 0.5)


async def close_of(socket_: Any) -> tuple[int, str]:
    """The code and reason the server closed `socket_` with."""
    with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
        await asyncio.wait_for(socket_.recv(), 10)
    assert closed.value.rcvd is not None, "the server sent no close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


@pytest.fixture
async def server(brand_settings: Settings) -> AsyncIterator[tuple[str, Any]]:
    """`gigcx serve`'s app under uvicorn (it starts its own runtime), and the app."""
    async with live_server(brand_settings) as live:
        yield live.address, live.app


async def receive(socket_: Any, count: int) -> list[dict[str, Any]]:
    """The next `count` events, leaving out typing indicators."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        event = json.loads(await asyncio.wait_for(socket_.recv(), 10))
        if event["type"] != "typing":
            found.append(event)
    return found


async def messages_only(socket_: Any, count: int) -> list[dict[str, Any]]:
    """The next `count` message.created events, skipping state and draft events."""
    found = []
    while len(found) < count:
        [event] = await receive(socket_, 1)
        if event["type"] == "message.created":
            found.append(event["message"])
    return found


# What the widget is told once Ana, a product expert, has claimed the conversation.
ANA_HAS_IT = {
    "type": "conversation.state",
    "state": "assigned",
    "agent": {"name": "Ana", "role": "product expert"},
}


async def test_live_chat_expert_reply_and_resume_after_reconnect(server: tuple[str, Any]):
    address, app = server
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        cid, token = await new_conversation(http)
        auth = {"Authorization": f"Bearer {token}"}
        async with widget_socket(address, cid, token) as live:
            assert live.subprotocol == "gigcx.v1"  # the server never echoes the token
            [state] = await receive(live, 1)
            assert state == {"type": "conversation.state", "state": "bot"}
            await http.post(
                f"/v1/conversations/{cid}/messages",
                json={"text": "do you ship to canada?"},
                headers=auth,
            )
            pushed = await messages_only(live, 2)
            assert [(m["seq"], m["author"]) for m in pushed] == [(1, "customer"), (2, "bot")]
            assert pushed[1]["citations"][0]["path"] == "general/shipping.md"

            await http.post(
                f"/v1/conversations/{cid}/messages",
                json={"text": "I want to talk to a person"},
                headers=auth,
            )
            events = await receive(live, 3)
            assert [e["type"] for e in events] == [
                "message.created",
                "message.created",
                "conversation.state",
            ]
            assert (events[2]["state"], events[2]["route"]) == ("waiting", "expert")

            # An expert claims the handoff and replies: the customer sees it live.
            runtime: GigCX = app.state.gigcx
            handoff = await runtime.store.open_handoff_for(cid)
            assert handoff is not None
            await register_experts(runtime)
            await runtime.escalations.claim(handoff.id, ALEX, display_name="Ana")
            [joined] = await receive(live, 1)
            assert joined == ANA_HAS_IT
            await runtime.escalations.send_reply(handoff.id, ALEX, "Hi, I'm Ana from Kestrel!")
            [expert] = await messages_only(live, 1)
            assert (expert["seq"], expert["author"], expert["text"]) == (
                5,
                "expert",
                "Hi, I'm Ana from Kestrel!",
            )

        # Offline: the customer and the expert both write.
        await http.post(
            f"/v1/conversations/{cid}/messages",
            json={"text": "thanks, my X2 won't pair"},
            headers=auth,
        )
        await runtime.escalations.send_reply(handoff.id, ALEX, "Hold the power button 5 s.")

        async with widget_socket(address, cid, token, after=5) as resumed:
            backlog = await messages_only(resumed, 2)
            assert [(m["seq"], m["author"]) for m in backlog] == [(6, "customer"), (7, "expert")]
            [state] = await receive(resumed, 1)
            assert state == ANA_HAS_IT
            await runtime.escalations.send_reply(handoff.id, ALEX, "Did that work?")
            [live_again] = await messages_only(resumed, 1)
            assert live_again["seq"] == 8
            # Nothing else is waiting: no duplicates of what the backlog sent.
            await nothing_more(resumed)

        listed = await http.get(f"/v1/conversations/{cid}/messages", headers=auth)
        assert [m["seq"] for m in listed.json()["messages"]] == list(range(1, 9))


async def test_messages_published_out_of_order_reach_the_widget_in_order_each_once(
    server: tuple[str, Any],
):
    """Two workers commit seq 2 and seq 3 one after the other, but seq 3's event is
    published first (publish order is not commit order): the widget still shows 1, 2, 3."""
    address, app = server
    runtime: GigCX = app.state.gigcx
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        cid, token = await new_conversation(http)
    async with widget_socket(address, cid, token) as live:
        [state] = await receive(live, 1)
        assert state == {"type": "conversation.state", "state": "bot"}

        async def publish(message: Any) -> None:
            event = Event(MESSAGE_CREATED, "kestrel", cid, {"message": message.to_dict()})
            await runtime.bus.publish(event)

        first = await runtime.store.add_message(cid, "customer", "my X2 won't pair")
        # A bot reply streamed as a draft (LLM mode): its message replaces the draft.
        second = await runtime.store.add_message(
            cid, "bot", "Hold the button for 5 s.", meta={"draft_id": "draft-2"}
        )
        third = await runtime.store.add_message(cid, "customer", "hello?")
        await publish(first)
        await publish(third)  # overtakes the second
        await publish(second)
        fourth = await runtime.store.add_message(cid, "customer", "anyone?")
        await publish(fourth)

        pushed = []
        while len(pushed) < 4:
            [event] = await receive(live, 1)
            if event["type"] == "message.created":
                pushed.append(event)
        assert [(e["message"]["seq"], e["message"]["text"]) for e in pushed] == [
            (1, "my X2 won't pair"),
            (2, "Hold the button for 5 s."),
            (3, "hello?"),
            (4, "anyone?"),
        ]
        # Read from the store to fill the gap, the reply still names its draft, so the
        # widget does not leave the draft on screen beside it.
        assert pushed[1]["draft_id"] == "draft-2"
        # The late event of seq 2 is not shown a second time.
        await nothing_more(live)


async def test_a_socket_with_a_wrong_token_or_unknown_conversation_is_closed(
    server: tuple[str, Any],
):
    address, _app = server
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        cid, _token = await new_conversation(http)
    for socket_cid, token, code in [(cid, "wrong", 4401), ("nope", "x", 4404)]:
        async with widget_socket(address, socket_cid, token) as socket_:
            assert (await close_of(socket_))[0] == code
    # No token at all (no subprotocol offered): refused the same way.
    async with websockets.connect(f"ws://{address}/v1/conversations/{cid}/ws") as socket_:
        code, reason = await close_of(socket_)
        assert code == 4401 and "token.<token>" in reason


async def test_a_bad_after_or_a_token_in_the_url_is_closed_with_a_reason(
    server: tuple[str, Any],
):
    address, _app = server
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        cid, token = await new_conversation(http)
    for after in ["abc", "-1", "2147483648"]:
        async with widget_socket(address, cid, token, after=after) as socket_:
            code, reason = await close_of(socket_)
            assert code == 4400
            assert f"after={after!r}" in reason and "whole number" in reason
    # A widget from before the token moved out of the URL is told where it goes now; it is
    # not told the conversation ended (4401), so it keeps the conversation for a reload.
    url = f"ws://{address}/v1/conversations/{cid}/ws?token={token}&after=0"
    async with websockets.connect(url) as socket_:
        code, reason = await close_of(socket_)
        assert code == 4400 and "Sec-WebSocket-Protocol" in reason


async def test_a_late_draft_of_a_message_already_shown_is_not_pushed(server: tuple[str, Any]):
    """LLM mode streams drafts, then stores the reply that replaces them. A widget that
    connects as the reply is stored gets the reply from the backlog; a draft of it published
    meanwhile must not follow it, or the widget shows it under the reply for good."""
    address, app = server
    runtime: GigCX = app.state.gigcx
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        cid, token = await new_conversation(http)
    await runtime.store.add_customer_message(cid, "how do I pair my X2?")
    await runtime.store.add_message(
        cid, "bot", "Hold the button for 5 s.", meta={"draft_id": "draft-2"}
    )

    async def draft(draft_id: str, text: str) -> None:
        data = {"draft_id": draft_id, "author": "bot", "text": text}
        await runtime.bus.publish(Event(MESSAGE_DRAFT, "kestrel", cid, data))

    async with widget_socket(address, cid, token) as socket_:
        backlog = await receive(socket_, 3)
        assert [e["type"] for e in backlog] == [
            "message.created",
            "message.created",
            "conversation.state",
        ]
        assert backlog[1]["draft_id"] == "draft-2"
        await draft("draft-2", "Hold the button")  # late: its message is shown already
        await draft("draft-3", "And then")  # the next answer's draft is shown
        [shown] = await receive(socket_, 1)
        assert shown == {
            "type": "message.draft",
            "draft_id": "draft-3",
            "author": "bot",
            "text": "And then",
        }
        await nothing_more(socket_)


async def test_a_socket_resuming_after_more_messages_than_exist_still_gets_new_ones(
    server: tuple[str, Any],
):
    """A widget that kept `after` from a store since reset still sees what is said next."""
    address, _app = server
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        cid, token = await new_conversation(http)
        async with widget_socket(address, cid, token, after=40) as socket_:
            [state] = await receive(socket_, 1)
            assert state == {"type": "conversation.state", "state": "bot"}
            posted = await http.post(
                f"/v1/conversations/{cid}/messages",
                json={"text": "are the buds waterproof?"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert posted.status_code == 201
            question, answer = await messages_only(socket_, 2)
    assert (question["seq"], question["text"]) == (1, "are the buds waterproof?")
    assert answer["author"] == "bot" and "IPX4" in answer["text"]


async def test_the_server_log_shows_every_request_but_never_a_conversation_token(
    synced_brand: Path, tmp_path: Path
):
    """`gigcx serve` logs each request (uvicorn's access log) and each WebSocket; a customer
    chats live through the widget's calls, and an old widget puts its token in the URL. The
    token, which with the conversation id opens the whole conversation, is in no line."""
    log = tmp_path / "serve.log"
    env = {"GIGCX_STORE__URL": f"sqlite:///{tmp_path / 'gigcx.db'}", "PYTHONUNBUFFERED": "1"}
    serve = ServerProcess(synced_brand / "gigcx.yaml", env, log).start()
    try:
        await serve.ready()
        address = serve.url.removeprefix("http://")
        async with httpx.AsyncClient(base_url=serve.url, timeout=30) as http:
            cid, token = await new_conversation(http)
            auth = {"Authorization": f"Bearer {token}"}
            async with widget_socket(address, cid, token) as live:
                [state] = await receive(live, 1)
                assert state["state"] == "bot"
                await http.post(
                    f"/v1/conversations/{cid}/messages",
                    json={"text": "do you ship to canada?"},
                    headers=auth,
                )
                pushed = await messages_only(live, 2)
                assert [m["author"] for m in pushed] == ["customer", "bot"]
            listed = await http.get(f"/v1/conversations/{cid}/messages?after=0", headers=auth)
            assert listed.status_code == 200
            old_widget = f"ws://{address}/v1/conversations/{cid}/ws?token={token}&after=2"
            async with websockets.connect(old_widget) as socket_:
                await close_of(socket_)
            careless = await http.get(f"/v1/conversations/{cid}", params={"token": token})
            assert careless.status_code == 401
            # Other careless ways: an encoded name, a ";" separator, another name ending in
            # "token", a "token=" in the path, and the token where the id goes.
            for url in [
                f"/v1/conversations/{cid}?%74oken={token}",
                f"/v1/conversations/{cid}?after=0;token={token}",
                f"/v1/conversations/{cid}/messages?Access_Token={token}&after=0",
                f"/v1/conversations/{cid};token={token}",
                f"/v1/conversations/{token}/messages",
            ]:
                assert (await http.get(url)).status_code in (401, 404)
    finally:
        serve.stop()
    output = log.read_text(errors="replace")
    assert f'"WebSocket /v1/conversations/{cid}/ws?after=0"' in output
    assert f"POST /v1/conversations/{cid}/messages HTTP/1.1" in output
    assert f"/v1/conversations/{cid}/ws?token=[redacted]&after=2" in output
    assert f"GET /v1/conversations/{cid}?token=[redacted] HTTP/1.1" in output
    for shown in [
        f"GET /v1/conversations/{cid}?%74oken=[redacted] HTTP/1.1",
        f"GET /v1/conversations/{cid}?after=0;token=[redacted] HTTP/1.1",
        f"GET /v1/conversations/{cid}/messages?Access_Token=[redacted]&after=0 HTTP/1.1",
        "GET /v1/conversations/[redacted]/messages HTTP/1.1",
    ]:
        assert shown in output
    # uvicorn 0.55 and later log the raw path as sent; older ones the decoded path re-quoted.
    assert (
        f"GET /v1/conversations/{cid};token=[redacted] HTTP/1.1" in output
        or f"GET /v1/conversations/{cid}%3Btoken%3D[redacted] HTTP/1.1" in output
    )
    assert token not in output


async def test_the_first_question_finds_the_knowledge_and_phrases_already_loaded(
    server: tuple[str, Any],
):
    """A server that has started has loaded what a bot turn needs (the knowledge's table and
    word index, the example phrases' vectors): its first customer does not wait for that."""
    address, app = server
    runtime: GigCX = app.state.gigcx
    embedded: list[int] = []
    embed_documents = runtime.index.embedder.embed_documents

    def counting(texts: list[str]) -> list[list[float]]:
        embedded.append(len(texts))
        return embed_documents(texts)

    runtime.index.embedder.embed_documents = counting  # type: ignore[method-assign]
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        cid, token = await new_conversation(http)
        reply = await http.post(
            f"/v1/conversations/{cid}/messages",
            json={"text": "How long does the X2 battery last?"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert reply.status_code == 201
    assert [r["author"] for r in reply.json()["replies"]] == ["bot"]
    assert embedded == [], f"the first question embedded {embedded} texts besides itself"
