"""The chat API: start a conversation, post and read messages, and a WebSocket that pushes
new messages and state changes, resuming after a sequence number with no gaps or repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from starlette.websockets import WebSocketDisconnect

from gigcx import events, metrics
from gigcx.app import GigCX
from gigcx.connectors.web.attributes import attribute_problem
from gigcx.connectors.web.identity import IdentityRefused, secrets_match, verify_identity
from gigcx.connectors.web.ratelimit import (
    Check,
    RateLimiter,
    RedisLimiter,
    Refusal,
    SlidingWindowLimiter,
)
from gigcx.connectors.web.schemas import (
    ConversationCreated,
    ConversationOut,
    ErrorOut,
    HandoverOut,
    MessageOut,
    MessagesOut,
    NewContact,
    NewConversation,
    NewMessage,
    NewRating,
    ReadReceipt,
    Text,
    TurnOut,
    WidgetConfig,
)
from gigcx.escalation.handoffs import NothingToRate, agent_of
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
MAX_SEQ = 2**31 - 1  # sequence numbers are 32-bit in the store
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


def runtime(request: Request) -> GigCX:
    return request.app.state.gigcx  # type: ignore[no-any-return]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def limiter(request: Request) -> RateLimiter:
    """The app's rate limiter: in this process, or in Redis when the runtime has it."""
    state = request.app.state
    made: RateLimiter | None = getattr(state, "limiter", None)
    if made is None:
        gigcx: GigCX = state.gigcx
        made = (
            RedisLimiter(gigcx.redis, gigcx.redis_prefix)
            if gigcx.redis is not None
            else SlidingWindowLimiter()
        )
        state.limiter = made
    return made


async def _check_rate(request: Request, *checks: Check) -> None:
    """Count one request against every limit, or none if any limit is reached (429)."""
    refusal = await limiter(request).hit(checks)
    if refusal is not None:
        raise too_many(refusal)


def too_many(refusal: Refusal) -> HTTPException:
    check, wait = refusal.check, refusal.retry_after
    return HTTPException(
        429,
        f"too many {check.what} (limit {check.limit} a minute); try again in {wait} s",
        headers={"Retry-After": str(wait)},
    )


def _per_ip(request: Request) -> Check:
    limit = request.app.state.web.messages_per_minute_per_ip
    return Check("ip", client_ip(request), limit, "requests from this address")


def _handoff_calls(request: Request, conversation: Conversation) -> Check:
    limit = request.app.state.web.handoff_calls_per_minute_per_conversation
    what = "calls for a person or an e-mail address in this conversation"
    return Check("handoff", conversation.id, limit, what)


async def _authorized(gigcx: GigCX, conversation_id: str, token: str | None) -> Conversation:
    conversation = await gigcx.store.find_conversation(conversation_id)
    if conversation is None or conversation.brand != gigcx.settings.brand:
        raise HTTPException(404, f"no conversation {conversation_id!r}")
    # The widget's own token, or the one a link in an e-mail gave (connectors/email).
    hashed = hash_token(token) if token else ""
    known = [h for h in (conversation.token_hash, conversation.link_token_hash) if h]
    if not token or not any(secrets_match(hashed, h) for h in known):
        raise HTTPException(401, "missing or wrong conversation token (Authorization: Bearer ...)")
    return conversation


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


async def conversation_for(
    conversation_id: Text,
    gigcx: Annotated[GigCX, Depends(runtime)],
    authorization: Annotated[Text | None, Header()] = None,
) -> Conversation:
    return await _authorized(gigcx, conversation_id, _bearer(authorization))


def _out(message: Message) -> MessageOut:
    return MessageOut(**message.to_dict())


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    413: {"model": ErrorOut},
    422: {"model": ErrorOut},
    429: {"model": ErrorOut},
}


def _check_brand_and_key(gigcx: GigCX, brand: str, key: str) -> None:
    settings = gigcx.settings
    if brand != settings.brand:
        raise HTTPException(
            404, f"no brand {brand!r} on this server (it serves {settings.brand!r})"
        )
    if not any(secrets_match(key, known) for known in settings.web.widget_keys):
        raise HTTPException(401, f"widget_key is not a valid key for brand {brand!r}")


def _check_origin(gigcx: GigCX, origin: str | None) -> None:
    """Only the brand's own sites may embed its widget, when it lists them."""
    allowed = gigcx.settings.web.allowed_origins
    if origin is None or "*" in allowed or origin in allowed:
        return
    raise HTTPException(
        403, f"origin {origin!r} may not embed the widget of brand {gigcx.settings.brand!r}"
    )


@router.get(
    "/brands/{brand}/widget",
    response_model=WidgetConfig,
    responses=ERRORS,
    summary="The widget's look and words for a brand (title, colour, greeting)",
)
async def widget_config(
    brand: Text, key: Text, gigcx: Annotated[GigCX, Depends(runtime)]
) -> WidgetConfig:
    _check_brand_and_key(gigcx, brand, key)
    settings = gigcx.settings
    widget = settings.widget
    return WidgetConfig(
        brand=settings.brand,
        title=widget.title or f"{settings.display_name} support",
        color=widget.color,
        greeting=widget.greeting,
        expert_wait_minutes=widget.expert_wait_minutes,
        identity_required=settings.identity.mode == "required",
    )


@router.post(
    "/brands/{brand}/conversations",
    response_model=ConversationCreated,
    status_code=201,
    responses=ERRORS,
    summary="Start a conversation (the widget calls this with the brand's public key)",
)
async def create_conversation(
    brand: Text,
    body: NewConversation,
    request: Request,
    gigcx: Annotated[GigCX, Depends(runtime)],
    origin: Annotated[Text | None, Header()] = None,
) -> ConversationCreated:
    settings = gigcx.settings
    _check_brand_and_key(gigcx, brand, body.widget_key)
    _check_origin(gigcx, origin)
    try:
        verified = verify_identity(settings.identity, body.user_id, body.user_hash)
    except IdentityRefused as error:
        raise HTTPException(401, f"identity refused: {error}") from None
    web = request.app.state.web
    problem = attribute_problem(body.attributes, web.max_attributes, web.max_attribute_chars)
    if problem is not None:
        raise _invalid(*problem)
    await _check_rate(request, _per_ip(request))
    token = secrets.token_urlsafe(32)
    conversation = await gigcx.front_line.start_conversation(
        body.user_id if verified else None,
        {**body.attributes, "verified": verified},
        hash_token(token),
    )
    return ConversationCreated(
        conversation_id=conversation.id,
        brand=conversation.brand,
        state=conversation.state,
        last_seq=conversation.last_seq,
        token=token,
    )


@router.get(
    "/conversations/{conversation_id}",
    response_model=ConversationOut,
    responses=ERRORS,
    summary="A conversation's state and newest sequence number",
)
async def get_conversation(
    conversation: Annotated[Conversation, Depends(conversation_for)],
) -> ConversationOut:
    return ConversationOut(
        conversation_id=conversation.id,
        brand=conversation.brand,
        state=conversation.state,
        last_seq=conversation.last_seq,
    )


@router.post(
    "/conversations/{conversation_id}/messages",
    response_model=TurnOut,
    status_code=201,
    responses=ERRORS,
    summary="Post the customer's message; the reply comes back here and on the WebSocket",
)
async def post_message(
    body: NewMessage,
    request: Request,
    conversation: Annotated[Conversation, Depends(conversation_for)],
    gigcx: Annotated[GigCX, Depends(runtime)],
) -> TurnOut:
    text = body.text.strip()  # never empty: NewMessage refuses text that shows nothing
    limit = gigcx.settings.web.max_message_chars
    if len(text) > limit:
        raise _invalid("text", f"must be at most {limit} characters (got {len(text)})")
    per_conversation = request.app.state.web.messages_per_minute_per_conversation
    await _check_rate(
        request,
        Check("conversation", conversation.id, per_conversation, "messages in this conversation"),
        _per_ip(request),
    )
    turn = await gigcx.front_line.handle_customer_message(conversation.id, text)
    return TurnOut(
        message=_out(turn.customer_message),
        replies=[_out(reply) for reply in turn.replies],
        state=turn.state,
    )


@router.post(
    "/conversations/{conversation_id}/handoff",
    response_model=HandoverOut,
    responses=ERRORS,
    summary="The customer asks for a person (the widget's button)",
)
async def request_person(
    request: Request,
    conversation: Annotated[Conversation, Depends(conversation_for)],
    gigcx: Annotated[GigCX, Depends(runtime)],
) -> HandoverOut:
    await _check_rate(request, _handoff_calls(request, conversation), _per_ip(request))
    handover = await gigcx.front_line.request_person(conversation.id)
    if handover is None:  # a person already has it: asking again changes nothing
        fresh = await gigcx.store.get_conversation(conversation.id)
        return HandoverOut(replies=[], state=fresh.state)
    replies = [_out(handover.notice)] if handover.notice is not None else []
    return HandoverOut(replies=replies, state=handover.state)


# How /contact's refusal names each state but waiting.
_STATE_WORDS = {
    "bot": "is with the bot",
    "assigned": "has a person already",
    "resolved": "is resolved",
}


@router.post(
    "/conversations/{conversation_id}/contact",
    response_model=MessageOut,
    status_code=201,
    responses={**ERRORS, 409: {"model": ErrorOut}},
    summary="The customer's e-mail address for a reply when nobody is available",
)
async def leave_contact(
    body: NewContact,
    request: Request,
    conversation: Annotated[Conversation, Depends(conversation_for)],
    gigcx: Annotated[GigCX, Depends(runtime)],
) -> MessageOut:
    if conversation.state != "waiting":
        # Only a customer waiting for a person is offered this; the bot or the person
        # already in the chat answers everyone else.
        raise HTTPException(
            409,
            "an e-mail address is taken only while the conversation waits for a person "
            f"(this one {_STATE_WORDS.get(conversation.state, conversation.state)})",
        )
    await _check_rate(request, _handoff_calls(request, conversation), _per_ip(request))
    message = await gigcx.escalations.leave_contact(conversation.id, body.email.strip())
    assert message is not None
    return _out(message)


@router.post(
    "/conversations/{conversation_id}/csat",
    status_code=201,
    responses={**ERRORS, 409: {"model": ErrorOut}},
    summary="The customer's rating (1-5, optional comment) after a resolution",
)
async def rate_conversation(
    body: NewRating,
    conversation: Annotated[Conversation, Depends(conversation_for)],
    gigcx: Annotated[GigCX, Depends(runtime)],
) -> dict[str, int]:
    try:
        rating = await gigcx.escalations.rate(conversation.id, body.score, body.comment.strip())
    except NothingToRate as error:
        raise HTTPException(409, str(error)) from None
    if rating is None:
        raise HTTPException(409, "this resolution has already been rated")
    return {"score": rating.score}


@router.post(
    "/conversations/{conversation_id}/read",
    status_code=204,
    responses=ERRORS,
    summary="Read receipt: the newest message the customer has had in front of them",
)
async def read_receipt(
    body: ReadReceipt,
    conversation: Annotated[Conversation, Depends(conversation_for)],
    gigcx: Annotated[GigCX, Depends(runtime)],
) -> None:
    # A receipt beyond the newest message is ignored: a client cannot mark unwritten replies.
    await gigcx.store.mark_conversation(conversation.id, read_seq=body.seq)


@router.get(
    "/conversations/{conversation_id}/messages",
    response_model=MessagesOut,
    responses=ERRORS,
    summary="Messages after a sequence number, oldest first",
)
async def list_messages(
    conversation: Annotated[Conversation, Depends(conversation_for)],
    gigcx: Annotated[GigCX, Depends(runtime)],
    after: Annotated[
        int, Query(ge=0, le=MAX_SEQ, description="Only messages with seq above this")
    ] = 0,
) -> MessagesOut:
    messages = await gigcx.store.messages_after(conversation.id, after)
    fresh = await gigcx.store.get_conversation(conversation.id)
    return MessagesOut(
        messages=[_out(m) for m in messages], state=fresh.state, last_seq=fresh.last_seq
    )


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
    try:
        conversation = await _authorized(gigcx, conversation_id, _socket_token(offered))
    except HTTPException as error:
        if error.status_code == 404:
            await _refuse(websocket, WS_NOT_FOUND, str(error.detail))
        else:
            await _refuse(websocket, WS_UNAUTHORIZED, TOKEN_IN_SUBPROTOCOL)
        return
    # Subscribe before reading the backlog, so nothing committed in between is missed;
    # the sequence number drops what the backlog already sent.
    async with gigcx.bus.subscribe(conversation.id) as subscription:
        with contextlib.suppress(WebSocketDisconnect):
            sent = await _send_backlog(websocket, gigcx, conversation.id, after)
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


async def _send_backlog(
    websocket: WebSocket, gigcx: GigCX, conversation_id: str, after: int
) -> int:
    """Send what was stored after `after` and the current state; the last seq sent."""
    sent = after
    while True:
        backlog = await gigcx.store.messages_after(conversation_id, sent)
        for message in backlog:
            await websocket.send_json(_stored_message_event(message))
            sent = message.seq
        if not backlog:
            break
    await websocket.send_json(
        {"type": events.CONVERSATION_STATE, **await state_snapshot(gigcx, conversation_id)}
    )
    return sent


async def state_snapshot(gigcx: GigCX, conversation_id: str) -> dict[str, Any]:
    """The state as the widget shows it: with the route while waiting, the agent once claimed."""
    state = (await gigcx.store.get_conversation(conversation_id)).state
    snapshot: dict[str, Any] = {"state": state}
    handoff = await gigcx.store.open_handoff_for(conversation_id)
    if handoff is not None and state == "waiting":
        snapshot["route"] = handoff.route
        snapshot["nobody_available"] = await gigcx.escalations.nobody_available(handoff.route)
    elif handoff is not None and state == "assigned":
        snapshot["agent"] = agent_of(handoff)
    return snapshot


async def _push(
    websocket: WebSocket, gigcx: GigCX, conversation_id: str, subscription: Subscription, sent: int
) -> None:
    """Send the conversation's events as they come, its messages in sequence order, each once.

    Events arrive in publish order, which is not commit order: when a message's event comes
    before that of an earlier message, the ones in between are read from the store and sent
    first, and their own events, coming later, are dropped.
    """
    try:
        async for event in subscription:
            if event.type not in CUSTOMER_EVENTS:
                continue
            if event.type == events.MESSAGE_CREATED:
                seq = event.data["message"]["seq"]
                if seq <= sent:
                    continue  # already sent: in the backlog, or to fill a gap
                if seq > sent + 1:
                    sent = await _send_missed(websocket, gigcx, conversation_id, sent, seq)
                sent = seq
            await websocket.send_json({"type": event.type, **event.data})
            if event.type == events.MESSAGE_CREATED:
                _observe_relay(event.data["message"])
    except SubscriptionOverflow:
        await websocket.close(code=WS_TRY_AGAIN, reason="reconnect with ?after=")


async def _send_missed(
    websocket: WebSocket, gigcx: GigCX, conversation_id: str, sent: int, before: int
) -> int:
    """Send the stored messages after `sent` and before `before`; the last seq sent.

    A message is committed before its event is published, and sequence numbers are handed
    out in commit order, so every message below one whose event has come is in the store.
    """
    for message in await gigcx.store.messages_after(conversation_id, sent, before - sent - 1):
        if message.seq >= before:
            break
        await websocket.send_json(_stored_message_event(message))
        sent = message.seq
    return sent


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


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": None}]
    )
