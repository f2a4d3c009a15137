"""The local expert console's API: a stand-in for Slack, to try both sides on one machine.

It drives exactly the calls the Slack connector does (`Escalations.claim/send_reply/release/
move_to_staff/hand_back/resolve`, internal notes like a `note:` in a Slack thread). Enabled only
when `web.console_token` is set; every call needs that token in `X-Console-Token`, and an address
that sends too many wrong ones must wait (`web.console_failures_per_minute_per_ip`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from gigcx.app import GigCX
from gigcx.connectors.web.dependencies import client_ip, limiter, runtime, too_many
from gigcx.connectors.web.identity import secrets_match
from gigcx.connectors.web.ratelimit import Check
from gigcx.connectors.web.schemas import ErrorOut, MessageText, Text
from gigcx.escalation import ClaimRefused
from gigcx.store import Handoff
from gigcx.store.models import as_utc

# What an expert reads for the codes the bot and the router write (`expert_needed`, `staff`).
REASON_LABELS: dict[str, str] = {
    "low_confidence": "Nothing close in the help articles",
    "human_requested": "The customer asked for a person",
    "frustration": "The customer is unhappy with the answers",
    "staff_topic": "Needs the customer's records",
    "expert_needed": "The bot had no answer",
    "llm_escalated": "The language model judged the articles not enough",
    "bot_error": "The bot could not search its articles",
}
ROUTE_LABELS: dict[str, str] = {"expert": "Gig experts", "staff": "Staff"}


class ExpertAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expert_id: Text = Field(min_length=1, max_length=128)
    name: Text | None = Field(None, max_length=128, description="Shown to the customer on claim.")


class ExpertReply(ExpertAction):
    text: MessageText = Field(min_length=1, max_length=4000)


async def console_access(
    request: Request,
    gigcx: Annotated[GigCX, Depends(runtime)],
    x_console_token: Annotated[Text | None, Header()] = None,
) -> GigCX:
    token = gigcx.settings.web.console_token
    if token is None:
        raise HTTPException(404, "the expert console is off: set web.console_token to use it")
    limit = request.app.state.web.console_failures_per_minute_per_ip
    failures = Check("console", client_ip(request), limit, "wrong console tokens from this address")
    # Checked before the token: once the limit is reached, even the right token waits, so
    # guessing on cannot tell a right guess from a wrong one.
    refusal = await limiter(request).reached([failures])
    if refusal is not None:
        raise too_many(refusal)
    if x_console_token is None or not secrets_match(x_console_token, token.get_secret_value()):
        refusal = await limiter(request).hit([failures])
        if refusal is not None:
            raise too_many(refusal)
        raise HTTPException(401, "missing or wrong X-Console-Token")
    return gigcx


Console = Annotated[GigCX, Depends(console_access)]
router = APIRouter(
    prefix="/v1/console",
    tags=["expert console (stand-in for Slack)"],
    responses={status: {"model": ErrorOut} for status in (401, 403, 404, 409, 413, 422, 429)},
)


def _summary(handoff: Handoff) -> dict[str, Any]:
    return {
        "id": handoff.id,
        "conversation_id": handoff.conversation_id,
        "state": handoff.state,
        "reason": handoff.reason,
        "reason_label": REASON_LABELS.get(handoff.reason, _words(handoff.reason)),
        "route": handoff.route,
        "route_label": ROUTE_LABELS.get(handoff.route, _words(handoff.route)),
        "tags": handoff.tags,
        "summary": handoff.packet.get("summary", ""),
        "assignee": handoff.assignee,
        "assignee_name": handoff.assignee_name,
        "offers": handoff.offers,
        "created_at": _when(handoff.created_at),
        "claimed_at": _when(handoff.claimed_at),
        "closed_at": _when(handoff.closed_at),
    }


def _words(code: str) -> str:
    """A code with no label yet, readable rather than hidden ("new_reason" -> "New reason")."""
    return code.replace("_", " ").capitalize()


def _when(moment: datetime | None) -> str | None:
    """ISO 8601 with its UTC offset (the store hands back aware UTC times)."""
    return as_utc(moment).isoformat() if moment is not None else None


@router.get("/handoffs", summary="Handoffs waiting or assigned, oldest first")
async def list_handoffs(gigcx: Console) -> list[dict[str, Any]]:
    return [_summary(h) for h in await gigcx.store.open_handoffs(gigcx.settings.brand)]


@router.get("/handoffs/{handoff_id}", summary="A handoff's packet and the live conversation")
async def show_handoff(handoff_id: Text, gigcx: Console) -> dict[str, Any]:
    handoff = await _handoff(gigcx, handoff_id)
    messages = await gigcx.store.messages_after(handoff.conversation_id)
    notes = await gigcx.store.internal_notes(handoff.id)
    return {
        **_summary(handoff),
        "packet": handoff.packet,
        "messages": [{**m.to_dict(), "created_at": _when(m.created_at)} for m in messages],
        "internal_notes": [
            {"author": n.author, "text": n.text, "created_at": _when(n.created_at)} for n in notes
        ],
    }


@router.post("/handoffs/{handoff_id}/claim", summary="Claim: the first expert wins")
async def claim(handoff_id: Text, body: ExpertAction, gigcx: Console) -> dict[str, Any]:
    await _handoff(gigcx, handoff_id)
    try:
        handoff = await gigcx.escalations.claim(handoff_id, body.expert_id, body.name)
    except ClaimRefused as refused:
        raise HTTPException(
            403,
            f"cannot claim as {body.expert_id}: {refused}. Who may claim, and how many at once, "
            "is set in experts.yaml and loaded by `gigcx experts sync`.",
        ) from None
    if handoff is None:
        raise HTTPException(409, "someone else has claimed it, or it is no longer waiting")
    return _summary(handoff)


@router.post("/handoffs/{handoff_id}/reply", status_code=201, summary="Reply to the customer")
async def reply(handoff_id: Text, body: ExpertReply, gigcx: Console) -> dict[str, Any]:
    await _handoff(gigcx, handoff_id)
    message = await gigcx.escalations.send_reply(handoff_id, body.expert_id, body.text.strip())
    if message is None:
        raise HTTPException(409, "only the expert who claimed it can reply")
    return message.to_dict()


@router.post(
    "/handoffs/{handoff_id}/note", status_code=201, summary="Keep a note from the customer"
)
async def note(handoff_id: Text, body: ExpertReply, gigcx: Console) -> dict[str, Any]:
    await _handoff(gigcx, handoff_id)
    kept = await gigcx.store.add_internal_note(handoff_id, body.expert_id, body.text.strip())
    return {"author": kept.author, "text": kept.text, "created_at": _when(kept.created_at)}


@router.post(
    "/handoffs/{handoff_id}/{action}", summary="release, move_to_staff, handback or resolve"
)
async def act(handoff_id: Text, action: Text, body: ExpertAction, gigcx: Console) -> dict[str, Any]:
    await _handoff(gigcx, handoff_id)
    steps = {
        "release": gigcx.escalations.release,
        "move_to_staff": gigcx.escalations.move_to_staff,
        "handback": gigcx.escalations.hand_back,
        "resolve": gigcx.escalations.resolve,
    }
    if action not in steps:
        raise HTTPException(
            404, f"no action {action!r}: use release, move_to_staff, handback or resolve"
        )
    handoff = await steps[action](handoff_id, body.expert_id)
    if handoff is None:
        raise HTTPException(409, f"cannot {action}: it is not assigned to {body.expert_id!r}")
    return _summary(handoff)


async def _handoff(gigcx: GigCX, handoff_id: str) -> Handoff:
    handoff = await gigcx.store.find_handoff(handoff_id)
    if handoff is None:
        raise HTTPException(404, f"no handoff {handoff_id!r}")
    conversation = await gigcx.store.get_conversation(handoff.conversation_id)
    if conversation.brand != gigcx.settings.brand:
        raise HTTPException(404, f"no handoff {handoff_id!r}")
    return handoff
