"""gigcx's own answerers, registered like any plugin's (`gigcx.answerers` entry points):
`quote` (the best knowledge passage, quoted; no LLM) and `llm` (a grounded answer written by
an OpenAI-compatible chat model, streamed as drafts, quoting the passage when the model fails).

Both start from the evidence-based decision (`FrontLineBot.decide`): answer, ask which
product, small talk, or escalate with a reason and a route.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gigcx.bot.answerer import AnswererContext, CustomerMessage, Escalation, Reply
from gigcx.bot.decision import Decision
from gigcx.bot.replies import citation, clarifying_question, quote_answer, small_talk_reply

if TYPE_CHECKING:
    from gigcx.bot.llm import LLMAnswer, LLMWriter

log = logging.getLogger(__name__)


class QuoteAnswerer:
    """Answers with the best passage, quoted with its source (`bot.mode: quote`)."""

    def __init__(self, context: AnswererContext) -> None:
        self.context = context
        self.settings = context.settings

    async def answer(self, message: CustomerMessage) -> Reply | Escalation:
        return self.respond(await self.decide(message))

    async def decide(self, message: CustomerMessage) -> Decision:
        """What to do with the message; raises when the search fails (the front line then
        escalates with `bot_error`)."""
        bot = self.context.bot  # looked up on each turn: tests may slow its `decide` down
        return await self.context.in_thread(bot.decide, message.text, message.history)

    def respond(self, decision: Decision) -> Reply | Escalation:
        """The reply (or escalation) the decision calls for, with no language model."""
        if decision.action == "escalate":
            return Escalation.of(decision)
        if decision.action == "small_talk":
            text = small_talk_reply(decision.small_talk, self.settings.display_name)
            return Reply(text, decision=decision)
        if decision.action == "clarify":
            return Reply(clarifying_question(decision, self.settings), decision=decision)
        text, citations = quote_answer(decision)
        return Reply(text, citations, decision=decision)


class LLMAnswerer(QuoteAnswerer):
    """A chat model writes the answer from the passages found (`bot.mode: llm`), and may
    escalate through its structured `escalate` field; when it fails, the passage is quoted."""

    def __init__(self, context: AnswererContext, writer: LLMWriter) -> None:
        super().__init__(context)
        self.writer = writer

    async def answer(self, message: CustomerMessage) -> Reply | Escalation:
        decision = await self.decide(message)
        if self._model_may_read(decision):
            # The model reads what was found before the bot gives up: it may answer what the
            # evidence alone did not dare to, or decline through its escalate field.
            written = await self._write(message, decision)
            if written is not None and not written.escalate:
                answered = replace(decision, action="answer", reason=None, route=None)
                citations = [citation(hit) for hit in written.cited]
                meta = {"llm_read_before_escalating": True}
                return Reply(written.text, citations, decision=answered, meta=meta)
            if written is not None:
                decision = replace(decision, reason="llm_escalated")
        if decision.action != "answer":
            return self.respond(decision)
        written = await self._write(message, decision)
        if written is None:
            quoted = self.respond(decision)
            assert isinstance(quoted, Reply)
            return replace(quoted, meta={"llm_fallback": True})
        if written.escalate:
            return Escalation.of(self.context.bot.escalated_by_llm(decision))
        citations = [citation(hit) for hit in written.cited]
        return Reply(written.text, citations, decision=decision)

    def _model_may_read(self, decision: Decision) -> bool:
        """An escalation only for want of evidence, with something plausible found."""
        return (
            decision.action == "escalate"
            and decision.reason in ("expert_needed", "low_confidence")
            and bool(decision.hits)
            and decision.hits[0].score >= self.settings.bot.related_threshold
        )

    async def _write(self, message: CustomerMessage, decision: Decision) -> LLMAnswer | None:
        """The model's answer (or its wish to escalate), streamed as drafts; None when it
        failed."""
        from gigcx.bot.llm import LLMFailure

        try:
            return await asyncio.wait_for(
                self.writer.answer(message.text, message.history, decision.hits[:5], message.draft),
                timeout=self.settings.bot.llm.timeout_seconds,
            )
        except (LLMFailure, TimeoutError) as error:
            log.warning(
                "LLM answer failed, quoting the best passage instead: %s", error or "timeout"
            )
            return None


class _QuotePlugin:
    name = "quote"
    description = "quotes the best knowledge passage with its source (no LLM)"
    settings_model = None

    def create(self, context: AnswererContext, plugin_settings: Any) -> QuoteAnswerer:
        return QuoteAnswerer(context)


class _LLMPlugin:
    name = "llm"
    description = "an OpenAI-compatible chat model writes grounded answers"
    settings_model = None
    settings_section = "bot.llm"

    def create(self, context: AnswererContext, plugin_settings: Any) -> LLMAnswerer:
        from gigcx.bot.llm import LLMWriter

        settings = context.settings
        return LLMAnswerer(context, LLMWriter(settings.bot.llm, settings.display_name))


# The objects the `gigcx.answerers` entry points in pyproject.toml name.
quote = _QuotePlugin()
llm = _LLMPlugin()
