"""The e-mail channel: expert replies and resolutions, from the store's outbox (consumer
"email"), to customers who left an address and have not read them in the chat.

`EmailChannel.deliver(item)` decides and sends one outbox item; `settle(item)` turns its
outcome into the outbox's bookkeeping (delivered, due again later, given up), fenced by the
item's lease; `deliver_due` and `run` are the loop that takes the items.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from fastapi import APIRouter

from gigcx.connectors.email.compose import Letter, Reply, compose
from gigcx.connectors.email.inbound import SeenTokens, add_inbound_route
from gigcx.connectors.email.links import LinkSigner
from gigcx.connectors.email.mailer import Mailer, SendFailed
from gigcx.connectors.email.resume import add_resume_routes
from gigcx.escalation.lifecycle import agent_of
from gigcx.store.models import Conversation, Handoff, Message, OutboxItem, as_utc, utcnow

if TYPE_CHECKING:
    from gigcx.app import GigCX

log = logging.getLogger(__name__)
CONSUMER = "email"
OUTBOX_KINDS = frozenset({"expert_message", "resolved"})
# One delivery is at most one SMTP session (each step bounded by email.smtp_timeout_seconds,
# at most 120 s; about seven steps); the lease outlasts the slowest.
LEASE = timedelta(seconds=900)
POLL_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 1800.0
_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
PEOPLE = ("expert", "staff")


class NotYet(Exception):
    """The customer may still read it in the chat: try again at `due_at`."""

    def __init__(self, due_at: datetime) -> None:
        super().__init__(due_at.isoformat())
        self.due_at = due_at


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min ... up to 30 minutes between tries of one e-mail."""
    return timedelta(seconds=min(MAX_BACKOFF_SECONDS, 30.0 * 2 ** max(0, attempts - 1)))


class EmailChannel:
    """A customer channel: what it consumes from the outbox, its HTTP endpoints (the
    inbound webhook and the links), and its delivery loop (`start`/`stop`)."""

    outbox_kinds = OUTBOX_KINDS

    def __init__(self, runtime: GigCX, mailer: Mailer | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        email = self.settings.email
        if email.link_secret is None or email.public_base_url is None:
            raise ValueError("the e-mail channel needs email.link_secret and public_base_url")
        self.signer = LinkSigner(email.link_secret.get_secret_value().encode())
        self.mailer = mailer or Mailer(email)
        self.seen_tokens = SeenTokens(runtime.redis, runtime.redis_prefix)
        self.router = APIRouter(tags=["e-mail"])
        add_inbound_route(self.router, self)
        add_resume_routes(self.router, self)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def chat_page_url(self) -> str:
        email = self.settings.email
        return email.chat_page_url or f"{email.public_base_url}/demo"

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(run(self, self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def check(self) -> list[str]:
        return await self.mailer.check()

    # ------------------------------------------------------------ one item

    async def deliver(self, item: OutboxItem, now: datetime | None = None) -> str:
        """Send what `item` is about, if the customer should get it by e-mail now; what
        happened, in words. NotYet while the customer may still read it in the chat;
        SendFailed when the e-mail did not go out."""
        now = now or utcnow()
        store = self.runtime.store
        handoff = await store.get_handoff(item.handoff_id)
        conversation = await store.get_conversation(handoff.conversation_id)
        address = str(conversation.customer_attributes.get("contact_email") or "").strip()
        if not address:
            return "skipped: the customer left no e-mail address"
        if not _ADDRESS.fullmatch(address):
            raise SendFailed("the address the customer left is not an e-mail address", final=True)
        delay = timedelta(seconds=self.settings.email.send_delay_seconds)
        covered = max(conversation.customer_read_seq, conversation.emailed_seq)
        if item.kind == "expert_message":
            message = (
                None if item.message_id is None else await store.message_by_id(item.message_id)
            )
            if message is None or message.seq <= covered:
                return "skipped: read in the chat or e-mailed already"
            due = as_utc(message.created_at) + delay
        elif item.kind == "resolved":
            if handoff.state != "resolved" or conversation.state != "resolved":
                return "skipped: the conversation went on after the resolution"
            closed = as_utc(handoff.closed_at or item.created_at)
            if _at_or_after(conversation.customer_read_at, closed):
                return "skipped: the customer saw the resolution in the chat"
            if _at_or_after(conversation.emailed_at, closed):
                return "skipped: an e-mail after the resolution said so"
            due = closed + delay
        else:
            return f"skipped: {item.kind} is not for e-mail"
        if now < due:
            raise NotYet(due)
        newer = await store.messages_after(conversation.id, covered)
        replies = [m for m in newer if m.author in PEOPLE]
        resolved = handoff.state == "resolved" and conversation.state == "resolved"
        if not replies and not resolved:
            return "skipped: nothing unread"
        letter = self._letter(conversation, handoff, address, replies, resolved, now)
        email = self.settings.email
        assert email.from_address is not None
        sender_name = email.from_name or f"{self.settings.display_name} support"
        thread_domain = email.reply_domain or email.from_address.rsplit("@", 1)[1]
        await self.mailer.send(compose(letter, email.from_address, sender_name, thread_domain))
        last = newer[-1].seq if newer else conversation.last_seq
        await store.mark_conversation(conversation.id, emailed_seq=max(last, covered))
        return f"sent {len(replies)} replies" + (" and the resolution" if resolved else "")

    def _letter(
        self,
        conversation: Conversation,
        handoff: Handoff,
        address: str,
        replies: list[Message],
        resolved: bool,
        now: datetime,
    ) -> Letter:
        email = self.settings.email
        expires = now + timedelta(seconds=email.link_lifetime_seconds)
        link = self.signer.link(conversation.id, expires)
        reply_to = (
            f"{self.signer.reply_local_part(conversation.id)}@{email.reply_domain}"
            if email.reply_domain
            else None
        )
        return Letter(
            brand=self.settings.display_name,
            conversation_id=conversation.id,
            to=address,
            replies=[Reply(_who(handoff, m), m.text) for m in replies],
            resolved_by=_who(handoff, None) if resolved else None,
            link=f"{email.public_base_url}/email/open?resume_token={link}",
            link_expires=expires,
            reply_to=reply_to,
        )

    async def settle(self, item: OutboxItem, now: datetime | None = None) -> bool:
        """Deliver `item` and settle it in the outbox; True when it is done with. Every
        settlement is fenced by the item's lease: one another process took over is left."""
        store = self.runtime.store
        try:
            outcome = await self.deliver(item, now)
        except NotYet as wait:
            waiting = "waiting for the customer to read it in the chat"
            if not await store.outbox_retry(item, waiting, wait.due_at):
                _lease_lost(item)
            return False
        except SendFailed as failed:
            if failed.final:
                log.error(
                    "e-mail for handoff %s (%s) given up, not sent: %s",
                    item.handoff_id,
                    item.kind,
                    failed,
                )
                if not await store.outbox_delivered(item):
                    _lease_lost(item)
                return False
            return await self._again(item, str(failed))
        except Exception as error:
            log.exception("e-mail for handoff %s (%s) failed", item.handoff_id, item.kind)
            return await self._again(item, f"{type(error).__name__}: {error}")
        log.info("e-mail for handoff %s (%s): %s", item.handoff_id, item.kind, outcome)
        if not await store.outbox_delivered(item):
            _lease_lost(item)
            return False
        return True

    async def _again(self, item: OutboxItem, problem: str) -> bool:
        wait = backoff(item.attempts)
        if await self.runtime.store.outbox_retry(item, problem, utcnow() + wait):
            log.error(
                "e-mail for handoff %s (%s) not sent (try %d; will try again in %d s): %s",
                item.handoff_id,
                item.kind,
                item.attempts,
                wait.total_seconds(),
                problem,
            )
        else:
            _lease_lost(item)
        return False


# ------------------------------------------------------------ the loop


async def deliver_due(channel: EmailChannel, now: datetime | None = None) -> int:
    """Take the e-mail outbox's due items (each handoff's in order) and settle them; how
    many were done with."""
    done = 0
    while True:
        taken = await channel.runtime.store.take_outbox(CONSUMER, now or utcnow(), LEASE)
        if not taken:
            return done
        results = await asyncio.gather(*(channel.settle(item, now) for item in taken))
        done += sum(results)
        if not any(results):
            return done


async def run(channel: EmailChannel, stop: asyncio.Event) -> None:
    """Deliver until `stop` is set, looking at the outbox every few seconds (replies wait
    `email.send_delay_seconds` anyway)."""
    while not stop.is_set():
        try:
            await deliver_due(channel)
        except Exception:  # the store may be down for a moment; the next round retries
            log.exception("could not read the e-mail outbox")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_SECONDS)


def _who(handoff: Handoff, message: Message | None) -> str:
    """How the customer knows who wrote (or resolved): the name the widget shows, never a
    channel id; the team when the message was someone else's."""
    agent = agent_of(handoff)
    staff = handoff.route == "staff"
    theirs = message is None or message.meta.get("assignee") in (None, handoff.assignee)
    if agent["name"] and theirs:
        return f"{agent['name']}, {agent['role']}"
    return "Our support team" if staff else "Our product expert"


def _at_or_after(moment: datetime | None, than: datetime) -> bool:
    return moment is not None and as_utc(moment) >= than


def _lease_lost(item: OutboxItem) -> None:
    log.warning(
        "e-mail outbox item %s of handoff %s: another process took it over; left to it",
        item.id,
        item.handoff_id,
    )
