"""Handoffs to people: open, claim, release, re-offer, hand back, resolve.

Each step is one guarded store update followed by events, so the web and Slack connectors
learn about it without this module knowing they exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal

from gigcx import events, metrics
from gigcx.config import Settings
from gigcx.events import Event, EventBus
from gigcx.store import ClaimerNotEligible, Conversation, ConversationStore, Handoff, Message
from gigcx.store.models import Csat, Route, as_utc, utcnow

log = logging.getLogger(__name__)


def agent_of(handoff: Handoff) -> dict[str, str]:
    """Who the customer is talking to, as the widget shows it."""
    # A name they gave, never their channel id (a claim without a name stores the id).
    name = handoff.assignee_name if handoff.assignee_name != handoff.assignee else None
    return {
        "name": name or "",
        "role": "support team" if handoff.route == "staff" else "product expert",
    }


def _shown_name(name: str | None) -> str | None:
    """The name the customer will see, without invisible or reading-order characters (a
    right-to-left override in a name would reverse the words around it)."""
    if name is None:
        return None
    shown = "".join(c for c in name if unicodedata.category(c) != "Cf")
    return " ".join(shown.split())[:80] or None


class NothingToRate(Exception):
    """A CSAT was sent for a conversation that has no resolution."""


class ClaimRefused(Exception):
    """The claimer may not take handoffs now; the message says why, to them ("you are ...")."""


class Escalations:
    """The handoff state machine of one brand, publishing an event for every change."""

    def __init__(
        self,
        settings: Settings,
        store: ConversationStore,
        bus: EventBus,
        on_resolved: Callable[[Handoff], Awaitable[object]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        # Told of each resolution after it is stored and announced (the knowledge drafter);
        # its failure is logged, never the resolution's.
        self.on_resolved = on_resolved
        self.claim_timeout = timedelta(seconds=settings.escalation.claim_timeout_seconds)
        self.resolve_timeout = timedelta(seconds=settings.escalation.resolve_timeout_seconds)

    async def open(
        self,
        conversation: Conversation,
        *,
        reason: str,
        route: Route,
        tags: list[str],
        packet: dict[str, object],
        notice: str,
        notice_meta: dict[str, object],
        nobody_available: bool = False,
    ) -> tuple[Handoff, Message] | None:
        """Escalate: the notice to the customer, state `waiting`, and the handoff, at once."""
        opened = await self.store.open_handoff(
            conversation.id,
            reason=reason,
            route=route,
            tags=tags,
            packet=packet,
            notice=notice,
            notice_meta=notice_meta,
            claim_timeout=self.claim_timeout,
        )
        if opened is None:
            return None
        handoff, message = opened
        await self._publish(conversation.id, events.MESSAGE_CREATED, message=message.to_dict())
        await self._publish(
            conversation.id,
            events.CONVERSATION_STATE,
            state="waiting",
            route=route,
            nobody_available=nobody_available,
        )
        await self._publish(
            conversation.id,
            events.HANDOFF_REQUESTED,
            handoff_id=handoff.id,
            reason=reason,
            route=route,
            tags=list(tags),
        )
        return opened

    async def claim(
        self, handoff_id: str, assignee: str, display_name: str | None = None
    ) -> Handoff | None:
        """waiting -> assigned for the first claimer; `display_name` is what the customer sees.

        None when someone else has it or it is no longer waiting; ClaimRefused when the
        claimer is not an active expert of the brand or is at their capacity.
        """
        try:
            handoff = await self.store.claim_handoff(
                self.settings.brand,
                handoff_id,
                assignee,
                self.resolve_timeout,
                _shown_name(display_name) or assignee,
            )
        except ClaimerNotEligible as refused:
            if refused.reason == "full":
                raise ClaimRefused(
                    f"you already have {refused.capacity} open conversations (your capacity)"
                ) from None
            if refused.reason == "not_staff":
                raise ClaimRefused(
                    "this conversation is for staff (an account or billing question)"
                ) from None
            raise ClaimRefused(
                f"you are not registered as an expert for {self.settings.display_name}"
            ) from None
        if handoff is not None:
            waited = as_utc(handoff.claimed_at or utcnow()) - as_utc(handoff.created_at)
            metrics.TIME_TO_CLAIM.observe(waited.total_seconds())
            await self._publish(
                handoff.conversation_id,
                events.CONVERSATION_STATE,
                state="assigned",
                agent=agent_of(handoff),
            )
            await self._publish(
                handoff.conversation_id,
                events.HANDOFF_CLAIMED,
                handoff_id=handoff.id,
                assignee=assignee,
            )
        return handoff

    async def release(self, handoff_id: str, assignee: str) -> Handoff | None:
        handoff = await self.store.release_handoff(handoff_id, assignee, self.claim_timeout)
        if handoff is not None:
            await self._changed(handoff, events.HANDOFF_RELEASED, "waiting", route=handoff.route)
        return handoff

    async def reoffer(
        self, handoff_id: str, route: Route | None = None, *, due_by: datetime | None = None
    ) -> Handoff | None:
        handoff = await self.store.reoffer_handoff(
            handoff_id, self.claim_timeout, route, due_by=due_by
        )
        if handoff is not None:
            await self._changed(handoff, events.HANDOFF_REOFFERED, "waiting", route=handoff.route)
        return handoff

    async def move_to_staff(self, handoff_id: str, assignee: str) -> Handoff | None:
        """assigned -> waiting on the staff route: the expert passes it to in-house staff."""
        handoff = await self.store.release_handoff(
            handoff_id, assignee, self.claim_timeout, to_staff=True
        )
        if handoff is not None:
            await self._changed(handoff, events.HANDOFF_REOFFERED, "waiting", route="staff")
        return handoff

    async def hand_back(self, handoff_id: str, assignee: str) -> Handoff | None:
        """assigned -> bot; the customer reads who handed them back (kept in the
        conversation, so it is there after a reload and in a later handoff's transcript)."""
        holder = await self.store.find_handoff(handoff_id)
        name = agent_of(holder)["name"] if holder is not None else None
        who = name or ("Our support team" if holder and holder.route == "staff" else "Our expert")
        returned = await self.store.hand_back(
            handoff_id,
            assignee,
            notice=f"{who} handed you back to the assistant. Ask it anything, "
            "or ask for a person again.",
        )
        if returned is None:
            return None
        handoff, notice = returned
        if notice is not None:
            await self.announce(notice)
        await self._changed(handoff, events.HANDOFF_RETURNED, "bot")
        return handoff

    async def sweep(self, now: datetime | None = None) -> list[Handoff]:
        """Re-offer every handoff nobody claimed in time, oldest first, and every one its
        expert did not resolve in time (`resolve_timeout_seconds`; the expert is told).

        One that gig experts have left unclaimed for `fallback_after_seconds` since the
        escalation moves to the staff route. Deadlines live in the database, so a restart
        loses none.
        """
        now = as_utc(now) if now is not None else utcnow()
        fallback = timedelta(seconds=self.settings.escalation.fallback_after_seconds)
        reoffered = []
        for handoff in await self.store.due_handoffs(self.settings.brand, now):
            waited = now - as_utc(handoff.created_at)
            to_staff = handoff.route == "expert" and waited >= fallback
            changed = await self.reoffer(handoff.id, "staff" if to_staff else None, due_by=now)
            if changed is not None:
                reoffered.append(changed)
        for handoff in await self.store.overdue_handoffs(self.settings.brand, now):
            changed = await self.time_out(handoff, now)
            if changed is not None:
                reoffered.append(changed)
        return reoffered

    async def time_out(self, handoff: Handoff, now: datetime) -> Handoff | None:
        """assigned -> waiting for a handoff its expert left unresolved past its resolve
        deadline: the customer is told and waits for someone else, the expert's capacity is
        freed, and (through the outbox) the expert is told and the handoff offered again.

        None when it changed meanwhile (resolved, released) or another process did it.
        """
        if handoff.assignee is None:
            return None
        name = agent_of(handoff)["name"] or "your expert"
        timed_out = await self.store.time_out_handoff(
            handoff.id,
            handoff.assignee,
            self.claim_timeout,
            due_by=now,
            notice=(
                f"Sorry, {name} is no longer available. We're finding someone else to help "
                "you; they'll reply right here in this chat."
            ),
            notice_meta={"kind": "timed_out", "handoff_id": handoff.id, "expert": handoff.assignee},
        )
        if timed_out is None:
            return None
        changed, notice = timed_out
        log.info("handoff %s timed out with %s: offered again", changed.id, handoff.assignee)
        await self._publish(
            changed.conversation_id, events.MESSAGE_CREATED, message=notice.to_dict()
        )
        await self._changed(
            changed,
            events.HANDOFF_REOFFERED,
            "waiting",
            route=changed.route,
            reason="resolve_timeout",
        )
        return changed

    async def run_sweeps(self, stop: asyncio.Event, every_seconds: float = 5.0) -> None:
        """Sweep until `stop` is set (the server runs this in the background).

        Of several server processes, the one holding the sweeper lease sweeps; if it dies,
        another takes over when the lease runs out (three rounds).
        """
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        lease = f"sweeper:{self.settings.brand}"
        while not stop.is_set():
            try:
                if await self.store.hold_lease(lease, holder, timedelta(seconds=3 * every_seconds)):
                    await self.sweep()
            except Exception:  # a failed sweep must not end the loop; the next one retries
                log.exception("handoff sweep (claim and resolve timeouts) failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_seconds)

    async def nobody_available(self, route: Route) -> bool:
        """True when the brand keeps a registry for the route and nobody in it is available.

        A brand without registered experts for the route is not judged: it may staff the
        route another way.
        """
        tier = "staff" if route == "staff" else "gig"
        registered, available = await self.store.availability(self.settings.brand, tier)
        return registered > 0 and available == 0

    async def leave_contact(self, conversation_id: str, email: str) -> Message | None:
        """The customer's e-mail for a reply when nobody is available; confirmed in the chat."""
        await self.store.set_contact_email(conversation_id, email)
        message = await self.store.add_message(
            conversation_id,
            "system",
            f"Thanks! We'll answer by e-mail at {email} if nobody replies here first.",
        )
        if message is not None:
            await self._publish(conversation_id, events.MESSAGE_CREATED, message=message.to_dict())
            await self._publish(conversation_id, events.CONTACT_LEFT, email=email)
        return message

    async def resolve(self, handoff_id: str, assignee: str) -> Handoff | None:
        """assigned -> resolved; a gig expert's resolution is paid (once per conversation)."""
        expert = await self.store.find_expert(self.settings.brand, assignee)
        escalation = self.settings.escalation
        paid = expert is not None and expert.tier == "gig"
        handoff = await self.store.resolve_handoff(
            handoff_id,
            assignee,
            escalation.payout_per_resolution if paid else Decimal(0),
            escalation.currency,
        )
        if handoff is not None:
            await self._changed(handoff, events.CONVERSATION_RESOLVED, "resolved")
            if self.on_resolved is not None:
                try:
                    await self.on_resolved(handoff)
                except Exception:
                    log.exception("after resolving handoff %s", handoff.id)
        return handoff

    async def send_reply(
        self, handoff_id: str, assignee: str, text: str, *, source: str | None = None
    ) -> Message | None:
        """The assigned person's message to the customer; None unless they hold the handoff.

        With `source` (where they wrote it, e.g. a Slack message), it is stored once however
        often it is sent (see `ConversationStore.add_message`).
        """
        handoff = await self.store.get_handoff(handoff_id)
        if handoff.state != "assigned" or handoff.assignee != assignee:
            return None
        author = "staff" if handoff.route == "staff" else "expert"
        message = await self.store.add_message(
            handoff.conversation_id,
            author,
            text,
            meta={"handoff_id": handoff_id, "assignee": assignee},
            only_in_state="assigned",
            source=source,
        )
        if message is not None:
            await self._publish(
                handoff.conversation_id, events.MESSAGE_CREATED, message=message.to_dict()
            )
        return message

    async def announce(self, message: Message) -> None:
        """Tell the conversation's listeners about a stored message; saying it again is
        harmless (the widget and its socket drop a sequence number they have shown)."""
        await self._publish(
            message.conversation_id, events.MESSAGE_CREATED, message=message.to_dict()
        )

    async def rate(self, conversation_id: str, score: int, comment: str = "") -> Csat | None:
        """The customer's CSAT for the conversation's last resolution; None if already rated.

        Raises NothingToRate when nothing in the conversation has been resolved.
        """
        handoff = await self.store.last_resolved_handoff(conversation_id)
        if handoff is None:
            raise NothingToRate("the conversation has no resolved handoff to rate")
        csat = await self.store.record_csat(handoff, score, comment)
        if csat is not None:
            await self._publish(
                conversation_id,
                events.CSAT_RECEIVED,
                handoff_id=handoff.id,
                score=score,
                comment=comment,
            )
        return csat

    async def _changed(self, handoff: Handoff, kind: str, state: str, **data: object) -> None:
        route = data.get("route")
        extra = {"route": route} if state == "waiting" and route else {}
        await self._publish(
            handoff.conversation_id, events.CONVERSATION_STATE, state=state, **extra
        )
        await self._publish(handoff.conversation_id, kind, handoff_id=handoff.id, **data)

    async def _publish(self, conversation_id: str, kind: str, **data: object) -> None:
        await self.bus.publish(Event(kind, self.settings.brand, conversation_id, dict(data)))
