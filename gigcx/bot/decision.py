"""The front line's decision for one customer message: answer, ask which product (clarify),
small talk, or escalate (why, and to whom), from the message, the recent turns and what the
knowledge base holds. Whether a passage answers is judged from evidence (see answerability).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from gigcx.bot.answerability import AnswerabilityModel, brand_threshold, features, load_model
from gigcx.bot.signals import (
    OTHER_ONE,
    MeaningReader,
    MeaningSignals,
    SignalReader,
    Signals,
    same_question,
)
from gigcx.bot.staff_model import staff_model_for
from gigcx.config import Settings
from gigcx.knowledge import KnowledgeIndex, SearchHit
from gigcx.knowledge.terms import terms

Action = Literal["answer", "clarify", "small_talk", "escalate"]
Reason = Literal[
    "low_confidence",
    "human_requested",
    "frustration",
    "staff_topic",
    "expert_needed",
    "llm_escalated",
    "bot_error",  # searching or deciding failed (an embedding endpoint or index down)
    "bot_unavailable",  # an answerer's backend (a bot server) could not answer
]
RouteName = Literal["expert", "staff"]

SEARCH_LIMIT = 8
TRAIL_PASSAGES = 5  # passages kept in the decision trail of a turn
# Passages of two products this close in meaning split the question between them.
CLARIFY_MARGIN = 0.06


@dataclass(frozen=True)
class Turn:
    """One earlier message of the conversation, as the bot sees it."""

    author: str
    text: str
    action: str | None = None  # for bot turns: what the bot did
    product: str | None = None  # for bot turns: the product of the passage it quoted
    options: tuple[str, ...] = ()  # for a clarifying question: the products offered
    # for bot turns: the buttons offered under it, as {title, payload}
    quick_replies: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: Reason | str | None = None  # an answerer plugin may escalate with its own code
    route: RouteName | None = None
    confidence: float = 0.0
    query: str = ""
    product: str | None = None
    topic: str | None = None
    small_talk: str | None = None
    tags: tuple[str, ...] = ()
    hits: tuple[SearchHit, ...] = field(default=(), repr=False)
    options: tuple[str, ...] = ()  # for clarify: the product ids the customer chooses from
    evidence: dict[str, float] = field(default_factory=dict, repr=False)
    asked_product: str | None = None  # the product the question was about, if it named one

    @property
    def best(self) -> SearchHit | None:
        return self.hits[0] if self.hits else None

    def summary(self) -> dict[str, object]:
        """The decision as stored with the bot's message and shown by `gigcx ask`."""
        return {
            "action": self.action,
            "reason": self.reason,
            "route": self.route,
            "confidence": round(self.confidence, 4),
            "query": self.query,
            "product": self.product,
            "topic": self.topic,
            "tags": list(self.tags),
            "options": list(self.options),
            # The decision trail (`/admin`): what was retrieved, best first, and the signals.
            "passages": [
                {
                    "title": hit.title,
                    "section": hit.section,
                    "path": hit.path,
                    "score": round(hit.score, 4),
                    "product": hit.product,
                }
                for hit in self.hits[:TRAIL_PASSAGES]
            ],
            "evidence": {
                name: round(float(value), 4) for name, value in sorted(self.evidence.items())
            },
        }


@dataclass(frozen=True)
class _Context:
    previous_question: str | None
    product: str | None
    staff_topic: str | None
    repeated: bool
    clarifying: tuple[str, ...] = ()  # the products the bot just asked the customer to pick


class FrontLineBot:
    """Decides what to do with a customer's message; never reads internal knowledge."""

    def __init__(
        self,
        settings: Settings,
        index: KnowledgeIndex,
        model: AnswerabilityModel | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        self.signals = SignalReader(settings)
        # A brand with no staff topics has nobody to send the customer's own case to.
        self.staff_model = (
            staff_model_for(index.embedder.model_id) if settings.routing.staff_topics else None
        )
        self.meanings = MeaningReader(settings, index.embedder, self.staff_model)
        self.model = model or load_model()
        # Product names say which passages to look at, not whether one answers.
        self._product_terms = frozenset(
            term
            for product in settings.products
            for name in (product.id, product.name, *product.aliases)
            for term in terms(name)
        )

    @property
    def threshold(self) -> float:
        """Least answerability to answer: the configured one, else the brand's calibrated
        operating point (see calibration), else the shipped one."""
        configured = self.settings.bot.answer_threshold
        if configured is not None:
            return configured
        return brand_threshold(self.index, self.model.threshold)

    def decide(self, text: str, history: Sequence[Turn] = ()) -> Decision:
        signals = self.signals.read(text)
        context = self._context(text, history)
        if signals.small_talk:
            return Decision(action="small_talk", small_talk=signals.small_talk)
        meaning = self.meanings.read(text)
        staff_topic = signals.staff_topic or meaning.staff_topic
        # A message that reads like the customer's own case goes to staff if the bot cannot
        # answer it, and at once when it reads so clearly.
        likely_staff = self._staff_topic_by_model(meaning, self._model_point("threshold"))
        if signals.human_requested or meaning.human_requested:
            staff = staff_topic or likely_staff or self._earlier_staff_topic(context)
            return self._escalate("human_requested", signals, context, staff_topic=staff)
        if staff_topic:
            return self._escalate("staff_topic", signals, context, staff_topic=staff_topic)
        if signals.frustrated or meaning.frustrated or context.repeated:
            # Routed by what the conversation was about, not by the complaint's own words.
            staff = self._earlier_staff_topic(context)
            return self._escalate("frustration", signals, context, staff_topic=staff)
        staff_topic = self._staff_topic_by_model(meaning, self._model_point("strong"))
        if staff_topic:
            return self._escalate("staff_topic", signals, context, staff_topic=staff_topic)

        query, product, excluded = self._query(text, signals, context)
        # The message was embedded whole for its meaning: a search for it needs no second pass.
        vector = meaning.vector if query == meaning.text else None
        hits = self.search(query, product, excluded, vector=vector)
        if not hits:
            return self._escalate(
                "staff_topic" if likely_staff else "low_confidence",
                signals,
                context,
                staff_topic=likely_staff,
                query=query,
                product=product,
            )
        options = self._products_to_choose(hits, product)
        if options and context.product in options:
            # Split between products, but the conversation already said which one.
            product = context.product
            hits = [hit for hit in hits if hit.product in (None, product)]
        elif options and not likely_staff:
            return Decision(action="clarify", query=query, options=options, hits=tuple(hits[:3]))
        evidence = features(hits, product) or {}
        confidence = self.model.probability(evidence)
        if confidence >= self.threshold:
            return Decision(
                action="answer",
                confidence=confidence,
                query=query,
                product=product or hits[0].product,
                hits=tuple(hits),
                evidence=evidence,
                asked_product=product,
            )
        related = hits[0].score >= self.settings.bot.related_threshold or product is not None
        escalation = self._escalate(
            "staff_topic" if likely_staff else "expert_needed" if related else "low_confidence",
            signals,
            context,
            staff_topic=likely_staff,
            query=query,
            product=product,
            hits=hits,
        )
        return replace(escalation, confidence=confidence, evidence=evidence, asked_product=product)

    def _model_point(self, name: Literal["threshold", "strong"]) -> float | None:
        if self.staff_model is None:
            return None
        return getattr(self.staff_model, name)

    def _staff_topic_by_model(self, meaning: MeaningSignals, point: float | None) -> str | None:
        """The staff topic when the staff-topic model puts the message at or above `point`."""
        if point is None or meaning.staff_probability < point:
            return None
        return meaning.nearest_staff_topic or "account"

    def _earlier_staff_topic(self, context: _Context) -> str | None:
        """The staff topic of the conversation so far: by the phrase lists, else the model on
        the customer's earlier question (asked only when the bot is already escalating)."""
        if context.staff_topic or context.previous_question is None:
            return context.staff_topic
        earlier = self.meanings.read(context.previous_question)
        return self._staff_topic_by_model(earlier, self._model_point("threshold"))

    def _products_to_choose(
        self, hits: Sequence[SearchHit], product: str | None
    ) -> tuple[str, ...]:
        """The products to ask about when the best passages are about different products and
        the customer has not said which one they have; () when not.

        Passages split a question between products when they are close in meaning, or when
        they are the same section of each product's page (brands write one page per product
        with the same headings: "Range" on the City's page and on the Trail's).
        """
        first = hits[0]
        if product is not None:
            return ()
        if first.evidence is not None and first.evidence.query_terms == 0:
            return ()  # "??" or emoji alone: nothing to ask a product about
        top = list(hits[:4])
        parallel = self._parallel_sections(top)
        if first.product is None:
            # A passage for every product answers it, unless product pages' same section
            # follows it.
            return parallel
        options = [first.product]
        for hit in top[1:]:
            if hit.score < first.score - CLARIFY_MARGIN:
                break
            if hit.product is None:
                return parallel  # a passage for every product answers it
            if hit.product not in options:
                options.append(hit.product)
        if len(options) > 1:
            return tuple(options)
        return parallel

    @staticmethod
    def _parallel_sections(hits: Sequence[SearchHit]) -> tuple[str, ...]:
        """The products of the first section heading that two or more products' passages share
        among `hits`, in rank order; () when none is shared."""
        by_heading: dict[str, list[str]] = {}
        for hit in hits:
            if hit.product is None:
                continue
            heading = " ".join(hit.section.lower().split())
            if heading and heading != " ".join(hit.title.lower().split()):
                products = by_heading.setdefault(heading, [])
                if hit.product not in products:
                    products.append(hit.product)
        return next((tuple(p) for p in by_heading.values() if len(p) > 1), ())

    def person_requested(self, history: Sequence[Turn] = ()) -> Decision:
        """The customer pressed "Talk to a person": escalate, routed by the conversation."""
        context = self._context("", history)
        signals = self.signals.read("")
        return self._escalate("human_requested", signals, context, staff_topic=context.staff_topic)

    # ------------------------------------------------------------ retrieval

    def _query(
        self, text: str, signals: Signals, context: _Context
    ) -> tuple[str, str | None, set[str]]:
        """The search text, the product it is about, and products it is not about.

        A follow-up ("and the other model?") is searched together with the question before
        it, with the product swapped when the customer means another one.
        """
        product = signals.products[0] if signals.products else None
        excluded: set[str] = set()
        if context.clarifying and context.previous_question is not None:
            # The answer to "which one do you have?": the question it was about, for it.
            chosen = product or self._chosen_option(text, context.clarifying)
            return f"{context.previous_question} {text}", chosen, excluded
        follow_up = signals.looks_like_follow_up or signals.refers_to_other
        if not follow_up or context.previous_question is None:
            return text, product, excluded
        previous = context.previous_question
        if signals.refers_to_other and context.product and product is None:
            others = self.signals.others_of_kind(context.product)
            excluded.add(context.product)
            product = others[0] if len(others) == 1 else None
        elif product is None:
            product = context.product
        current = text
        if product is not None:
            name = self._product_name(product)
            current = OTHER_ONE.sub(name, text)
            if context.product and context.product != product:
                previous = self.signals.replace_mentions(previous, context.product, name)
        return f"{previous} {current}", product, excluded

    def _chosen_option(self, text: str, options: tuple[str, ...]) -> str | None:
        """Which of the offered products a reply such as "the first one" or "x2" means."""
        lowered = text.lower()
        ordinals = ("first", "second", "third", "fourth")
        for number, option in enumerate(options):
            if number < len(ordinals) and ordinals[number] in lowered:
                return option
        return None

    def search(
        self,
        query: str,
        product: str | None = None,
        excluded: frozenset[str] | set[str] = frozenset(),
        vector: Sequence[float] | None = None,
        leave_out: str | None = None,
    ) -> list[SearchHit]:
        """Public passages for `query`, leaving out those about another product."""
        hits = self.index.search(
            query,
            limit=SEARCH_LIMIT,
            ignore_terms=self._product_terms,
            vector=vector,
            leave_out=leave_out,
        )
        # A passage about another product does not answer this product's question.
        kept = [
            hit
            for hit in hits
            if hit.product not in excluded
            and (product is None or hit.product is None or hit.product == product)
        ]
        return kept

    def _product_name(self, product_id: str) -> str:
        product = self.settings.product(product_id)
        return product.name if product is not None else product_id

    # ------------------------------------------------------------ context

    def _context(self, text: str, history: Sequence[Turn]) -> _Context:
        previous_question: str | None = None
        product: str | None = None
        staff_topic: str | None = None
        repeated = False
        recent = list(history)[-2 * self.settings.bot.history_turns :] if history else []
        answered_before = False
        clarifying: tuple[str, ...] = ()
        last_bot = next((turn for turn in reversed(recent) if turn.author == "bot"), None)
        if last_bot is not None and last_bot.action == "clarify":
            clarifying = last_bot.options
        for turn in reversed(recent):
            if turn.author == "bot":
                answered_before = answered_before or turn.action == "answer"
                if product is None and turn.product:
                    product = turn.product
                continue
            if turn.author != "customer":
                continue
            signals = self.signals.read(turn.text)
            if signals.small_talk:
                continue
            if previous_question is None and not signals.frustrated:
                previous_question = turn.text
            if product is None and signals.products:
                product = signals.products[0]
            staff_topic = staff_topic or signals.staff_topic
            if answered_before and same_question(turn.text, text):
                repeated = True
        return _Context(previous_question, product, staff_topic, repeated, clarifying)

    # ------------------------------------------------------------ escalation

    def escalated_by_llm(self, decision: Decision) -> Decision:
        """The answer decision, turned into the escalation the language model asked for."""
        tags = (f"product:{decision.product}",) if decision.product else ()
        return Decision(
            action="escalate",
            reason="llm_escalated",
            route=self.settings.routing.default_route,
            confidence=decision.confidence,
            query=decision.query,
            product=decision.product,
            tags=tags,
            hits=decision.hits,
        )

    def _escalate(
        self,
        reason: Reason,
        signals: Signals,
        context: _Context,
        *,
        staff_topic: str | None = None,
        query: str = "",
        product: str | None = None,
        hits: Sequence[SearchHit] = (),
    ) -> Decision:
        route: RouteName = "staff" if staff_topic else self.settings.routing.default_route
        product = product or (signals.products[0] if signals.products else context.product)
        tags: list[str] = []
        if product:
            tags.append(f"product:{product}")
        if staff_topic:
            tags.append(f"topic:{staff_topic}")
        for hit in hits[:3]:
            tags.extend(f"topic:{tag}" for tag in hit.tags if f"topic:{tag}" not in tags)
        return Decision(
            action="escalate",
            reason=reason,
            route=route,
            confidence=hits[0].score if hits else 0.0,
            query=query,
            product=product,
            topic=staff_topic,
            tags=tuple(tags),
            hits=tuple(hits),
        )
