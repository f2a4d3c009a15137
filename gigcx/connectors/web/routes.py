"""The chat API's HTTP routes: the widget's settings, start a conversation, post and read
messages, rate a bot answer, ask for a person, leave an e-mail address, rate the resolution.
The WebSocket that
pushes new messages is in `websocket.py`; what the routes depend on (the runtime, the
conversation and its token, rate limits) in `dependencies.py`.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError

from gigcx.app import GigCX
from gigcx.connectors.web.attributes import attribute_problem
from gigcx.connectors.web.dependencies import (
    check_rate,
    conversation_for,
    handoff_calls,
    hash_token,
    per_ip,
    runtime,
)
from gigcx.connectors.web.identity import IdentityRefused, secrets_match, verify_identity
from gigcx.connectors.web.ratelimit import Check
from gigcx.connectors.web.schemas import (
    MAX_SEQ,
    AnswerRatingIn,
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
from gigcx.escalation.lifecycle import NothingToRate
from gigcx.store import Conversation, Message

router = APIRouter(prefix="/v1")


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
    await check_rate(request, per_ip(request))
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
    await check_rate(
        request,
        Check("conversation", conversation.id, per_conversation, "messages in this conversation"),
        per_ip(request),
    )
    turn = await gigcx.front_line.handle_customer_message(conversation.id, text, conversation)
    return TurnOut(
        message=_out(turn.customer_message),
        replies=[_out(reply) for reply in turn.replies],
        state=turn.state,
    )


@router.put(
    "/conversations/{conversation_id}/messages/{seq}/rating",
    status_code=204,
    responses=ERRORS,
    summary="The customer's thumbs up or down on a bot answer; rating again replaces it",
)
async def rate_answer(
    body: AnswerRatingIn,
    request: Request,
    conversation: Annotated[Conversation, Depends(conversation_for)],
    gigcx: Annotated[GigCX, Depends(runtime)],
    seq: Annotated[int, Path(ge=0, le=MAX_SEQ, description="The bot answer's seq")],
) -> None:
    per_conversation = request.app.state.web.messages_per_minute_per_conversation
    await check_rate(
        request,
        Check("rating", conversation.id, per_conversation, "ratings in this conversation"),
        per_ip(request),
    )
    if not await gigcx.store.rate_answer(conversation.id, seq, body.helpful):
        raise HTTPException(
            404,
            f"message {seq} of this conversation is not a bot answer: only messages with "
            '"rateable": true can be rated',
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
    await check_rate(request, handoff_calls(request, conversation), per_ip(request))
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
    await check_rate(request, handoff_calls(request, conversation), per_ip(request))
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
    shown = [message.to_dict() for message in messages]
    # The customer's own votes, so a reloaded widget shows them pressed.
    if any(item["rateable"] for item in shown):
        ratings = await gigcx.store.answer_ratings(conversation.id)
        for item in shown:
            if item["rateable"]:
                item["rating"] = ratings.get(item["seq"])
    return MessagesOut(
        messages=[MessageOut(**item) for item in shown],
        state=fresh.state,
        last_seq=fresh.last_seq,
    )


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": None}]
    )
