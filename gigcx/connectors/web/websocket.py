"""The chat API's WebSocket: pushes a conversation's new messages, drafts and state changes,
resuming after a sequence number with no gaps or repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, WebSocket
from starlette.websockets import WebSocketDisconnect

from gigcx import events, metrics
from gigcx.app import GigCX
from gigcx.connectors.web.dependencies import authorized
from gigcx.connectors.web.schemas import MAX_SEQ
from gigcx.escalation.lifecycle import agent_of
from gigcx.events import Subscription, SubscriptionOverflow
from gigcx.store import Conversation, Message
from gigcx.store.models import as_utc, utcnow

router = APIRouter(prefix="/v1")
# Events a customer's widget may see; handoff details (routes, packets) stay with experts.
CUSTOMER_EVENTS = {
    events.MESSAGE_CREATED,
    events.MESSAGE_DRAFT,
    events.CONVERSATION_STATE,
    events.TYPING,
}
WS_BAD_REQUEST = 4400
WS_UNAUTHORIZED = 4401
WS_NOT_FOUND = 4404
WS_TRY_AGAIN = 1013
# The WebSocket's token travels as a subprotocol ("token.<token>" next to "gigcx.v1"), not in
# the URL: servers and proxies log URLs, and the token with the conversation id opens the
# whole conversation. Browsers cannot set an Authorization header on a WebSocket, and a
# subprotocol is checked before any message flows, unlike a first "auth" message, which
# would leave an unauthenticated socket open and need a timeout. The server echoes only
# "gigcx.v1", so the token is not sent back either.
WS_PROTOCOL = "gigcx.v1"
TOKEN_PROTOCOL_PREFIX = "token."
TOKEN_IN_SUBPROTOCOL = "missing or wrong token: offer subprotocols gigcx.v1 and token.<token>"
TOKEN_NOT_IN_URL = "the token goes in Sec-WebSocket-Protocol (token.<token>), not in the URL"


@router.websocket("/conversations/{conversation_id}/ws")
async def conversation_socket(websocket: WebSocket, conversation_id: str) -> None:
    """Pushes `message.created`, `message.draft` and `conversation.state` as JSON.

    Connect to ?after=<last seq you have> offering the subprotocols
    ["gigcx.v1", "token.<token>"]: missed messages come first, then live ones, each once.
    """
    gigcx: GigCX = websocket.app.state.gigcx
    # Accept first, then refuse with a close code and reason: a browser cannot read the
    # HTTP status of a refused handshake, only a close frame.
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=WS_PROTOCOL if WS_PROTOCOL in offered else None)
    query = websocket.query_params
    if "token" in query:
        # Not 4401: an old widget would drop the conversation; this way it keeps it, and a
        # reload brings the current widget.js.
        await _refuse(websocket, WS_BAD_REQUEST, TOKEN_NOT_IN_URL)
        return
    after = _sequence_number(query.get("after", "0"))
    if after is None:
        wanted = f"after must be a whole number from 0 to {MAX_SEQ}"
        await _refuse(websocket, WS_BAD_REQUEST, f"{wanted}, got after={query['after']!r}")
        return
    # Subscribe before reading the conversation, so nothing committed after that read is
    # missed; the sequence number drops what the backlog already sent. The one read checks
    # the token, says whether there is a backlog at all, and gives the state to show first.
    async with gigcx.bus.subscribe(conversation_id) as subscription:
        try:
            conversation = await authorized(gigcx, conversation_id, _socket_token(offered))
        except HTTPException as error:
            if error.status_code == 404:
                await _refuse(websocket, WS_NOT_FOUND, str(error.detail))
            else:
                await _refuse(websocket, WS_UNAUTHORIZED, TOKEN_IN_SUBPROTOCOL)
            return
        with contextlib.suppress(WebSocketDisconnect):
            sent = await _send_backlog(websocket, gigcx, conversation, after)
            # Push until the client goes away: a push loop alone would never notice.
            pushing = asyncio.create_task(
                _push(websocket, gigcx, conversation.id, subscription, sent)
            )
            listening = asyncio.create_task(_until_disconnect(websocket))
            done, pending = await asyncio.wait(
                {pushing, listening}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                task.result()


def _socket_token(offered: list[str]) -> str | None:
    for protocol in offered:
        if protocol.startswith(TOKEN_PROTOCOL_PREFIX):
            return protocol.removeprefix(TOKEN_PROTOCOL_PREFIX)
    return None


def _sequence_number(text: str) -> int | None:
    """`text` as a sequence number (0 to MAX_SEQ), or None if it is not one."""
    if not text.isascii() or not text.isdigit() or len(text) > len(str(MAX_SEQ)):
        return None
    number = int(text)
    return number if number <= MAX_SEQ else None


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    # A close frame's reason may hold at most 123 bytes.
    await websocket.close(code=code, reason=reason.encode()[:120].decode(errors="ignore"))


@dataclass
class _Sent:
    """What a socket has sent: its last message's seq, and the drafts its messages replaced
    (a draft of one of them that comes after it, say one published while the socket read
    the backlog, would stay on the customer's screen: it is dropped)."""

    seq: int
    replaced_drafts: set[str] = field(default_factory=set)

    async def message(self, websocket: WebSocket, event: dict[str, Any]) -> None:
        await websocket.send_json(event)
        self.seq = event["message"]["seq"]
        if event.get("draft_id"):
            self.replaced_drafts.add(event["draft_id"])


async def _send_backlog(
    websocket: WebSocket, gigcx: GigCX, conversation: Conversation, after: int
) -> _Sent:
    """Send the messages stored after `after` up to the conversation as read (what was
    committed since comes through the subscription), then its state.

    An `after` beyond the conversation's newest message (a client that kept a number from a
    store since reset) counts from that newest message: new messages are still pushed."""
    sent = _Sent(min(after, conversation.last_seq))
    while sent.seq < conversation.last_seq:
        backlog = await gigcx.store.messages_after(conversation.id, sent.seq)
        for message in backlog:
            await sent.message(websocket, _stored_message_event(message))
        if not backlog:
            break
    snapshot = await state_snapshot(gigcx, conversation.id, conversation.state)
    await websocket.send_json({"type": events.CONVERSATION_STATE, **snapshot})
    return sent


async def state_snapshot(gigcx: GigCX, conversation_id: str, state: str) -> dict[str, Any]:
    """The state as the widget shows it (`state`, as just read from the store): with the route
    while waiting, the agent once claimed."""
    snapshot: dict[str, Any] = {"state": state}
    if state not in ("waiting", "assigned"):
        return snapshot  # with the bot, or resolved: no handoff to tell of
    handoff = await gigcx.store.open_handoff_for(conversation_id)
    if handoff is not None and state == "waiting":
        snapshot["route"] = handoff.route
        snapshot["nobody_available"] = await gigcx.escalations.nobody_available(handoff.route)
    elif handoff is not None and state == "assigned":
        snapshot["agent"] = agent_of(handoff)
    return snapshot


async def _push(
    websocket: WebSocket,
    gigcx: GigCX,
    conversation_id: str,
    subscription: Subscription,
    sent: _Sent,
) -> None:
    """Send the conversation's events as they come, its messages in sequence order, each once.

    Events arrive in publish order, which is not commit order: when a message's event comes
    before that of an earlier message, the ones in between are read from the store and sent
    first, and their own events, coming later, are dropped. So is a draft of a message
    already sent.
    """
    try:
        async for event in subscription:
            if event.type not in CUSTOMER_EVENTS:
                continue
            if event.type == events.MESSAGE_DRAFT:
                if event.data.get("draft_id") in sent.replaced_drafts:
                    continue  # its message is on the customer's screen already
            elif event.type == events.MESSAGE_CREATED:
                seq = event.data["message"]["seq"]
                if seq <= sent.seq:
                    continue  # already sent: in the backlog, or to fill a gap
                if seq > sent.seq + 1:
                    await _send_missed(websocket, gigcx, conversation_id, sent, seq)
                await sent.message(websocket, {"type": event.type, **event.data})
                _observe_relay(event.data["message"])
                continue
            await websocket.send_json({"type": event.type, **event.data})
    except SubscriptionOverflow:
        await websocket.close(code=WS_TRY_AGAIN, reason="reconnect with ?after=")


async def _send_missed(
    websocket: WebSocket, gigcx: GigCX, conversation_id: str, sent: _Sent, before: int
) -> None:
    """Send the stored messages after the last one sent and before `before`.

    A message is committed before its event is published, and sequence numbers are handed
    out in commit order, so every message below one whose event has come is in the store.
    """
    missed = await gigcx.store.messages_after(conversation_id, sent.seq, before - sent.seq - 1)
    for message in missed:
        if message.seq >= before:
            break
        await sent.message(websocket, _stored_message_event(message))


def _stored_message_event(message: Message) -> dict[str, Any]:
    """A stored message as its `message.created` event: with the id of the draft streamed
    before it (LLM mode), so the widget replaces the draft however the message reached it."""
    event: dict[str, Any] = {"type": events.MESSAGE_CREATED, "message": message.to_dict()}
    draft_id = message.meta.get("draft_id") if message.meta else None
    if draft_id:
        event["draft_id"] = draft_id
    return event


def _observe_relay(message: dict[str, Any]) -> None:
    if message["author"] in ("expert", "staff"):  # a person's reply reached the customer
        created = datetime.fromisoformat(message["created_at"])
        metrics.RELAY_SECONDS.labels("customer").observe(
            (utcnow() - as_utc(created)).total_seconds()
        )


async def _until_disconnect(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
