"""The front line's turn: store the customer's message, ask the answerer, then reply or
escalate.

What to say is the answerer's (`gigcx.bot.answerer`: quote, llm, or a plugin's); the turn
around it is the front line's: one turn at a time per conversation, storing and publishing,
the typing indicator, the handoff with its packet, and `bot_error` when the answerer fails.
The API, `gigcx ask` and `gigcx eval` all go through `FrontLine.handle_customer_message`.
Every message is committed before its event is published, and the bot's own messages are
written only while the conversation is with the bot, so it cannot talk after a handoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import redis.asyncio as redis

from gigcx import events, metrics
from gigcx.bot.answerer import (
    Answerer,
    AnswererUnavailable,
    CustomerMessage,
    Escalation,
    QuickReply,
    Reply,
)
from gigcx.bot.decision import Decision, FrontLineBot, Turn
from gigcx.bot.replies import handover_notice
from gigcx.bot.turn_leases import TurnLeases
from gigcx.config import Settings
from gigcx.escalation import Escalations, build_packet
from gigcx.events import Event, EventBus
from gigcx.knowledge import SearchHit
from gigcx.store import Conversation, ConversationStore, Message

log = logging.getLogger(__name__)
T = TypeVar("T")
# How long a worker's hold on a conversation's turn lasts unless it renews it (it does, a
# few times a lease, while the turn runs): a worker that dies holding it delays that
# conversation's next message by at most this long.
TURN_LEASE_SECONDS = 2.0


def knowledge_thread_pool() -> ThreadPoolExecutor:
    """Threads for embedding and search (CPU work, kept off the event loop): many, so that
    in a surge many queries reach the embedder together and go to the model as one batch
    (see QueryBatcher). Shared by the front line and its answerer."""
    return ThreadPoolExecutor(max_workers=32, thread_name_prefix="gigcx-knowledge")


@dataclass(frozen=True)
class Handover:
    """What an escalation did: the notice to the customer and the handoff (None if the
    conversation had already left the bot), and the conversation's state after it."""

    notice: Message | None
    handoff_id: str | None
    state: str


@dataclass
class TurnResult:
    """What one customer message led to."""

    customer_message: Message
    replies: list[Message] = field(default_factory=list)
    decision: Decision | None = None
    state: str = "bot"
    handoff_id: str | None = None


class FrontLine:
    """One brand's front line over its store, event bus, knowledge, answerer and escalations.

    `bot` reads the knowledge for what the front line itself needs (the expert's packet, the
    route of a "Talk to a person"); `answerer` says what to reply.
    """

    def __init__(
        self,
        settings: Settings,
        store: ConversationStore,
        bus: EventBus,
        bot: FrontLineBot,
        escalations: Escalations,
        answerer: Answerer,
        turn_locks: redis.Redis | None = None,
        turn_lock_prefix: str = "",
        turn_lease_seconds: float = TURN_LEASE_SECONDS,
        knowledge_threads: ThreadPoolExecutor | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.bot = bot
        self.escalations = escalations
        self.answerer = answerer
        # How long a message waits for another worker's turn on its conversation: longer
        # than any bot turn can take (an LLM answer gives up after its timeout). A dead
        # worker's hold runs out long before, after one lease.
        self.turn_leases = (
            TurnLeases(
                turn_locks,
                turn_lock_prefix,
                turn_lease_seconds,
                wait_seconds=60.0 + settings.bot.llm.timeout_seconds,
            )
            if turn_locks is not None
            else None
        )
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._knowledge = knowledge_threads or knowledge_thread_pool()

    def close(self) -> None:
        self._knowledge.shutdown(wait=False, cancel_futures=True)
        if self.turn_leases is not None:
            self.turn_leases.stop()

    async def _in_thread(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._knowledge, functools.partial(work, *args, **kwargs))

    async def start_conversation(
        self,
        customer_id: str | None = None,
        attributes: dict[str, Any] | None = None,
        token_hash: str = "",
    ) -> Conversation:
        return await self.store.create_conversation(
            self.settings.brand, customer_id, attributes, token_hash
        )

    async def handle_customer_message(
        self, conversation_id: str, text: str, conversation: Conversation | None = None
    ) -> TurnResult:
        """Store the customer's message and let the bot reply, unless a person has it.

        `conversation`: the conversation as the caller just read it (the API reads it to check
        the token), so the turn does not read it again."""
        if conversation is None or conversation.state == "resolved":
            conversation = await self.store.get_conversation(conversation_id)
        conversation = await self._reopen_if_resolved(conversation)
        message, state = await self.store.add_customer_message(conversation_id, text)
        await self._publish(conversation_id, events.MESSAGE_CREATED, message=message.to_dict())

        started = time.perf_counter()
        if state != "bot":
            # A person has it: the bot stays silent, and waits for no turn lock (one left by a
            # worker that died would otherwise hold this message up until it expires).
            return TurnResult(customer_message=message, state=state)
        async with self._lock(conversation_id) as waited:
            if waited:
                # Another turn of this conversation ran meanwhile and may have handed it over.
                conversation = await self.store.get_conversation(conversation_id)
            else:
                conversation.state = state
            result = await self._bot_turn(conversation, message)
        if result.decision is not None:
            decision = result.decision
            metrics.DECISIONS.labels(decision.action, decision.reason or "").inc()
            metrics.BOT_REPLY_SECONDS.observe(time.perf_counter() - started)
        return result

    async def request_person(self, conversation_id: str) -> Handover | None:
        """The customer asked for a person with the widget's button (no message of theirs).

        None when the conversation is not with the bot (a person has it already).
        """
        async with self._lock(conversation_id):
            conversation = await self._reopen_if_resolved(
                await self.store.get_conversation(conversation_id)
            )
            if conversation.state != "bot":
                return None
            history = await self._history(conversation_id, conversation.last_seq + 1)
            return await self._escalate(conversation, self.bot.person_requested(history), "")

    async def _reopen_if_resolved(self, conversation: Conversation) -> Conversation:
        """resolved -> bot when the customer comes back; the widget is told."""
        if conversation.state == "resolved" and await self.store.reopen(conversation.id):
            await self._publish(conversation.id, events.CONVERSATION_STATE, state="bot")
            return await self.store.get_conversation(conversation.id)
        return conversation

    @contextlib.asynccontextmanager
    async def _lock(self, conversation_id: str) -> AsyncIterator[bool]:
        """One bot turn at a time per conversation: in this process, and with `turn_locks`
        (Redis, when scaled out) across processes, so two messages of one conversation
        that reach two workers at once are answered one after the other. Yields whether
        another turn may have run while this one waited (so what was read before is stale)."""
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = self._locks[conversation_id] = asyncio.Lock()
        waited = lock.locked()
        async with lock:
            if self.turn_leases is None:
                yield waited
                return
            async with self.turn_leases.hold(conversation_id) as waited_elsewhere:
                yield waited or waited_elsewhere

    async def _bot_turn(self, conversation: Conversation, message: Message) -> TurnResult:
        conversation_id = conversation.id
        result = TurnResult(customer_message=message, state=conversation.state)
        if conversation.state != "bot":
            return result  # a person has the conversation: the bot stays silent
        await self._publish(conversation_id, events.TYPING, author="bot", active=True)
        try:
            return await self._answer_or_escalate(conversation, message, result)
        except Exception:
            # The embedding endpoint or the index failed, or a bug: the customer is not left
            # without a reply; a person takes over, and the log has the traceback.
            log.exception(
                "the bot could not answer message %d of conversation %s; escalating (bot_error)",
                message.seq,
                conversation_id,
            )
            return await self._escalate_after_error(conversation, message, result)
        finally:
            await self._publish(conversation_id, events.TYPING, author="bot", active=False)

    async def _escalate_after_error(
        self, conversation: Conversation, message: Message, result: TurnResult
    ) -> TurnResult:
        decision = Decision(
            action="escalate",
            reason="bot_error",
            route=self.settings.routing.default_route,
            query=message.text,
        )
        result.decision = decision
        # No search for the expert's packet: what failed would most likely fail again.
        handover = await self._escalate(conversation, decision, message.text, search=False)
        return self._handed_over(result, handover)

    async def _answer_or_escalate(
        self, conversation: Conversation, message: Message, result: TurnResult
    ) -> TurnResult:
        conversation_id = conversation.id
        history = await self._history(conversation_id, message.seq)
        # Drafts streamed under this id are replaced by the reply that carries it.
        draft_id = uuid.uuid4().hex
        drafted = False

        async def draft(text: str) -> None:
            nonlocal drafted
            drafted = True
            await self._publish(
                conversation_id, events.MESSAGE_DRAFT, draft_id=draft_id, author="bot", text=text
            )

        asked = CustomerMessage(conversation_id, message.text, tuple(history), draft)
        try:
            outcome = await self.answerer.answer(asked)
        except AnswererUnavailable as error:
            log.warning("the answerer is unavailable; escalating (bot_unavailable): %s", error)
            outcome = Escalation("bot_unavailable")
        if isinstance(outcome, Escalation):
            decision = result.decision = self._escalation_decision(outcome, message.text)
            handover = await self._escalate(
                conversation, decision, message.text, facts=outcome.facts
            )
            return self._handed_over(result, handover)
        if not isinstance(outcome, Reply):
            raise TypeError(f"an answerer returned {type(outcome).__name__}, not Reply/Escalation")
        decision = outcome.decision or Decision(action="answer", query=message.text)
        result.decision = decision
        meta = dict(outcome.meta)
        if outcome.quick_replies:
            meta["quick_replies"] = [
                (item if isinstance(item, QuickReply) else QuickReply(item)).to_dict()
                for item in outcome.quick_replies
            ]
        if drafted:
            meta["draft_id"] = draft_id
        citations = [dict(c) for c in outcome.citations]
        await self._reply(conversation_id, outcome.text, citations, decision, result, meta)
        return result

    def _escalation_decision(self, escalation: Escalation, text: str) -> Decision:
        """The answerer's escalation as the decision the turn reports and the packet reads."""
        base = escalation.decision or Decision(action="escalate", query=text)
        return replace(
            base,
            action="escalate",
            reason=escalation.reason,
            route=escalation.route or self.settings.routing.default_route,
            tags=tuple(escalation.tags),
        )

    async def _reply(
        self,
        conversation_id: str,
        text: str,
        citations: list[dict[str, Any]],
        decision: Decision,
        result: TurnResult,
        meta: dict[str, Any] | None = None,
    ) -> None:
        reply = await self.store.add_message(
            conversation_id,
            "bot",
            text,
            citations=citations,
            meta={"decision": decision.summary(), **(meta or {})},
            only_in_state="bot",
        )
        if reply is None:
            # A person took the conversation while the bot was thinking: say nothing.
            result.state = (await self.store.get_conversation(conversation_id)).state
            return
        result.replies.append(reply)
        extra = {"draft_id": meta["draft_id"]} if meta and "draft_id" in meta else {}
        await self._publish(
            conversation_id, events.MESSAGE_CREATED, message=reply.to_dict(), **extra
        )

    @staticmethod
    def _handed_over(result: TurnResult, handover: Handover) -> TurnResult:
        if handover.notice is not None:
            result.replies.append(handover.notice)
        result.handoff_id = handover.handoff_id
        result.state = handover.state
        return result

    async def _escalate(
        self,
        conversation: Conversation,
        decision: Decision,
        text: str,
        *,
        search: bool = True,
        facts: Mapping[str, str] | None = None,
    ) -> Handover:
        """Open the handoff with its packet; with `search`, the packet gets the passages
        found for the question if the decision has none. `facts`: what the answerer's
        backend learned (label: value), for the expert."""
        messages = await self.store.messages_after(conversation.id)
        # The summary starts from the latest real question: not "thanks", not "that didn't
        # help", not "a person please" (unless that is all the customer said).
        said = [(m.text, self.bot.signals.read(m.text)) for m in messages if m.author == "customer"]
        questions = [text for text, s in said if not s.small_talk and not s.frustrated]
        questions = [
            text for text, s in said if not (s.small_talk or s.frustrated or s.human_requested)
        ] or questions
        # For "a person please" or "that didn't help": what the bot last searched for.
        earlier = [
            m.meta["decision"]
            for m in messages
            if m.author == "bot" and (m.meta.get("decision") or {}).get("query")
        ]
        query = decision.query or (str(earlier[-1]["query"]) if earlier else text)
        product = decision.product or (earlier[-1].get("product") if earlier else None)
        if search:
            hits = decision.hits or tuple(await self._passages(query, product))
            internal_hits = await self._internal_passages(query)
        else:
            hits, internal_hits = decision.hits, []
        route = decision.route or self.settings.routing.default_route
        nobody_available = await self.escalations.nobody_available(route)
        # Masking personal data in a long conversation takes CPU time: off the event loop.
        packet = await asyncio.to_thread(
            build_packet,
            reason=decision.reason or "low_confidence",
            route=decision.route or self.settings.routing.default_route,
            tags=decision.tags,
            hits=hits,
            conversation=conversation,
            messages=messages,
            question=questions[-1] if questions else None,
            internal_hits=internal_hits,
            facts=facts or {},
            redact_personal_data=self.settings.escalation.redact_personal_data,
            phone_regions=self.settings.escalation.phone_regions,
        )
        opened = await self.escalations.open(
            conversation,
            reason=packet.reason,
            route=decision.route or self.settings.routing.default_route,
            tags=list(decision.tags),
            packet=packet.model_dump(),
            notice=handover_notice(decision, self.settings.display_name, nobody_available),
            notice_meta={
                "decision": decision.summary(),
                "kind": "handover",
                "nobody_available": nobody_available,
            },
            nobody_available=nobody_available,
        )
        state = (await self.store.get_conversation(conversation.id)).state
        if opened is None:
            return Handover(notice=None, handoff_id=None, state=state)
        handoff, notice = opened
        return Handover(notice=notice, handoff_id=handoff.id, state=state)

    async def _passages(self, query: str, product: str | None) -> list[SearchHit]:
        """What the bot found for `query`, for the expert's packet."""
        try:
            return await self._in_thread(self.bot.search, query, product)
        except Exception as error:  # the packet goes without passages, not the handoff
            log.warning("no passages for the handover packet: %s", error, exc_info=True)
            return []

    async def _internal_passages(self, query: str) -> list[SearchHit]:
        """Internal passages for the expert's packet; never shown to the customer."""
        try:
            hits = await self._in_thread(self.bot.index.search, query, 3, include_internal=True)
        except Exception as error:
            log.warning("no internal passages for the handover packet: %s", error, exc_info=True)
            return []
        return [hit for hit in hits if hit.audience == "internal"]

    async def _history(self, conversation_id: str, before_seq: int) -> list[Turn]:
        window = 2 * self.settings.bot.history_turns
        if window == 0 or before_seq <= 1:
            return []  # nothing to read (a conversation's first message is seq 1)
        messages = await self.store.messages_after(
            conversation_id, after_seq=max(0, before_seq - 1 - window)
        )
        turns = []
        for message in messages:
            if message.seq >= before_seq:
                break
            decision = message.meta.get("decision") or {}
            turns.append(
                Turn(
                    author=message.author,
                    text=message.text,
                    action=decision.get("action"),
                    product=decision.get("product"),
                    options=tuple(decision.get("options") or ()),
                    quick_replies=tuple(message.meta.get("quick_replies") or ()),
                )
            )
        return turns

    async def _publish(self, conversation_id: str, kind: str, **data: Any) -> None:
        await self.bus.publish(Event(kind, self.settings.brand, conversation_id, data))
