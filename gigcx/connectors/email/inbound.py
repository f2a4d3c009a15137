"""Replies by e-mail, back into the conversation: the inbound webhook in Mailgun's format
(form fields `recipient`, `sender`, `from`, `stripped-text`, `body-plain`, and `timestamp`,
`token`, `signature` = HMAC-SHA256(signing key, timestamp + token) in hex).

A reply is taken only when the signature is right, fresh and not seen before, the reply
address is one we signed for that conversation, and it comes from the address the customer
left. Refusals say why; none stores anything, and the log never names the address.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from email.utils import parseaddr
from typing import TYPE_CHECKING, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gigcx.connectors.email.compose import REPLY_ABOVE
from gigcx.connectors.email.links import LinkSigner

if TYPE_CHECKING:
    import redis.asyncio as redis

    from gigcx.app import GigCX
    from gigcx.config import Settings

log = logging.getLogger(__name__)
# A signature older (or further ahead) than this is refused: a replay of a captured post.
FRESH_SECONDS = 300
# Where a mail client starts quoting what it replies to.
_QUOTE_HEADERS = (
    re.compile(r"^\s*On .{0,300}wrote:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Am .{0,300}schrieb .{0,200}:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Le .{0,300}a écrit\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*-+\s*Original Message\s*-+\s*$", re.IGNORECASE),
    re.compile(r"^\s*From:\s.+$"),
    re.compile(r"^_{10,}\s*$"),
)


def signature_problem(
    key: str, timestamp: str, token: str, signature: str, now: float | None = None
) -> str | None:
    """Why the webhook's signature is not acceptable, or None when it is."""
    if not (timestamp and token and signature):
        return "timestamp, token and signature are required"
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    # As bytes: compare_digest refuses str with characters beyond ASCII (a hostile post).
    given = signature.strip().lower().encode("utf-8", "replace")
    if not hmac.compare_digest(expected.encode(), given):
        return "the signature does not match (check email.inbound_signing_key)"
    try:
        age = (now if now is not None else time.time()) - float(timestamp)
    except ValueError:
        return "the timestamp is not a number"
    if abs(age) > FRESH_SECONDS:
        return f"the timestamp is {int(abs(age))} s away from now (more than {FRESH_SECONDS} s)"
    return None


def reply_text(stripped: str, body: str) -> str:
    """The customer's new words: the service's stripped text, else the body without the
    quoted e-mail and what follows our marker."""
    text = stripped.strip() or _strip_quoted(body)
    return text.replace("\x00", "").strip()


def _strip_quoted(body: str) -> str:
    kept: list[str] = []
    for line in body.replace("\r\n", "\n").split("\n"):
        if REPLY_ABOVE in line or any(p.match(line) for p in _QUOTE_HEADERS):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


class SeenTokens:
    """Webhook tokens already taken, for as long as their signature is fresh: in Redis when
    several server processes share it, else in this process."""

    def __init__(self, client: redis.Redis | None, prefix: str) -> None:
        self.client = client
        self.prefix = f"{prefix}:email-token:"
        self._local: dict[str, float] = {}

    async def take(self, token: str) -> bool:
        """True the first time `token` is taken (until it is `given_back`)."""
        ttl = 2 * FRESH_SECONDS
        if self.client is not None:
            return bool(await self.client.set(self.prefix + token, "1", nx=True, ex=ttl))
        now = time.monotonic()
        self._local = {t: until for t, until in self._local.items() if until > now}
        if token in self._local:
            return False
        self._local[token] = now + ttl
        return True

    async def give_back(self, token: str) -> None:
        """The post was not acted on (we failed): its retry may take the token again."""
        if self.client is not None:
            await self.client.delete(self.prefix + token)
        else:
            self._local.pop(token, None)


def refused(status: int, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail})


class EmailEndpoints(Protocol):
    """What the e-mail channel's HTTP endpoints (here and in resume.py) use of the channel."""

    runtime: GigCX
    settings: Settings
    signer: LinkSigner
    seen_tokens: SeenTokens

    @property
    def chat_page_url(self) -> str: ...


def add_inbound_route(router: APIRouter, channel: EmailEndpoints) -> None:
    @router.post("/email/inbound", summary="A reply by e-mail (the inbound service's webhook)")
    async def inbound(request: Request) -> JSONResponse:
        settings = channel.settings.email
        if settings.reply_domain is None or settings.inbound_signing_key is None:
            return refused(404, "replies by e-mail are not taken here (email.reply_domain)")
        form = await request.form()
        field = {k: v for k, v in form.items() if isinstance(v, str)}
        token = field.get("token", "")
        problem = signature_problem(
            settings.inbound_signing_key.get_secret_value(),
            field.get("timestamp", ""),
            token,
            field.get("signature", ""),
        )
        if problem is not None:
            log.warning("e-mail reply refused: %s", problem)
            return refused(401, f"signature refused: {problem}")
        if not await channel.seen_tokens.take(token):
            return refused(409, "this post was taken already (its token was used before)")
        # 406: the inbound service does not post a refused reply again.
        conversation_id = channel.signer.conversation_of_reply(field.get("recipient", ""))
        if conversation_id is None:
            log.warning("e-mail reply refused: the reply address is not one this server signed")
            return refused(406, "the recipient is not a reply address of a conversation")
        conversation = await channel.runtime.store.find_conversation(conversation_id)
        if conversation is None or conversation.brand != channel.settings.brand:
            return refused(406, "the conversation of this reply address does not exist")
        left = str(conversation.customer_attributes.get("contact_email") or "").strip().lower()
        senders = {
            parseaddr(field.get("from", ""))[1].strip().lower(),
            field.get("sender", "").strip().lower(),
        }
        if not left or left not in senders:
            log.warning(
                "e-mail reply to conversation %s refused: it does not come from the address "
                "the customer left",
                conversation_id,
            )
            return refused(406, "the sender is not the address the customer left")
        text = reply_text(field.get("stripped-text", ""), field.get("body-plain", ""))
        if not text:
            return refused(406, "the reply has no words above the quoted e-mail")
        limit = channel.settings.web.max_message_chars
        if len(text) > limit:
            text = text[: limit - 1].rstrip() + "…"
        try:
            await channel.runtime.front_line.handle_customer_message(conversation_id, text)
        except BaseException:
            await channel.seen_tokens.give_back(token)  # the service's retry may deliver it
            raise
        log.info("e-mail reply added to conversation %s", conversation_id)
        return JSONResponse({"status": "added to the conversation"})
