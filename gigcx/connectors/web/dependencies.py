"""What the chat API's endpoints depend on: the brand's runtime, the conversation a request
names (with its bearer token checked), and the rate limits per address and per conversation.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from gigcx.app import GigCX
from gigcx.connectors.web.identity import secrets_match
from gigcx.connectors.web.ratelimit import (
    Check,
    RateLimiter,
    RedisLimiter,
    Refusal,
    SlidingWindowLimiter,
)
from gigcx.connectors.web.schemas import Text
from gigcx.store import Conversation


async def runtime(request: Request) -> GigCX:
    # async, though it awaits nothing: FastAPI runs a plain `def` dependency in a worker
    # thread, a thread hop on every request.
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


async def check_rate(request: Request, *checks: Check) -> None:
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


def per_ip(request: Request) -> Check:
    limit = request.app.state.web.messages_per_minute_per_ip
    return Check("ip", client_ip(request), limit, "requests from this address")


def handoff_calls(request: Request, conversation: Conversation) -> Check:
    limit = request.app.state.web.handoff_calls_per_minute_per_conversation
    what = "calls for a person or an e-mail address in this conversation"
    return Check("handoff", conversation.id, limit, what)


async def authorized(gigcx: GigCX, conversation_id: str, token: str | None) -> Conversation:
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
    return await authorized(gigcx, conversation_id, _bearer(authorization))
