"""What a customer's words alone tell the bot: a request for a person, frustration, a topic
that needs the customer's records, small talk, products named, and whether it is a follow-up.

The phrase lists come from the brand's `gigcx.yaml` (with sensible defaults), as regular
expressions matched case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from gigcx.bot.staff_model import StaffTopicModel
from gigcx.config import ProductSettings, Settings
from gigcx.knowledge.embeddings import Embedder

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
GREETING = re.compile(
    r"^(?:hi|hello|hey|hiya|good (?:morning|afternoon|evening)|yo)(?: there)?[!. ]*$", re.I
)
THANKS = re.compile(
    r"^(?:(?:ok(?:ay)?|great|perfect|cool|awesome|nice)[,!. ]*)?"
    r"(?:thanks?(?: you)?(?: so much| a lot)?|thank you(?: so much)?|cheers|ty|that helped|"
    r"that worked|got it|bye|goodbye)[!. ]*$",
    re.I,
)
FOLLOW_UP_START = re.compile(
    r"^(?:and|but|also|what about|how about|same (?:for|with)|what of|is that|does that|"
    r"does it|is it|can it|will it|and if|ok and|okay and)\b",
    re.I,
)
REFERRING_WORD = re.compile(r"\b(?:it|that|this|those|these|they|them|one|other|same)\b", re.I)
OTHER_ONE = re.compile(
    r"\b(?:the )?other (?:one|model|version|headset|headphones?|pair|product|kind|type)s?\b"
    r"|\bthe other\b",
    re.I,
)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def same_question(first: str, second: str) -> bool:
    """Near-identical wording (the customer asking again)."""
    a, b = set(words(first)), set(words(second))
    if len(a) < 3 or len(b) < 3:
        return False
    return len(a & b) / len(a | b) >= 0.8


@dataclass(frozen=True)
class Signals:
    human_requested: bool
    frustrated: bool
    staff_topic: str | None
    small_talk: str | None  # "greeting" | "thanks"
    products: tuple[str, ...]  # ids of products named in the text
    refers_to_other: bool
    looks_like_follow_up: bool


class SignalReader:
    """Reads `Signals` from a customer's message, with the brand's phrase lists compiled once."""

    def __init__(self, settings: Settings) -> None:
        self.products: Sequence[ProductSettings] = settings.products
        self._product_patterns = [(p.id, p.mention_pattern()) for p in settings.products]
        self._human = _compile(settings.bot.human_request)
        self._frustration = _compile(settings.bot.frustration)
        self._staff_topics = {
            topic: _compile(patterns) for topic, patterns in settings.routing.staff_topics.items()
        }

    def read(self, text: str) -> Signals:
        stripped = text.strip()
        small_talk = (
            "greeting" if GREETING.match(stripped) else "thanks" if THANKS.match(stripped) else None
        )
        word_count = len(words(stripped))
        return Signals(
            human_requested=_any(self._human, stripped),
            frustrated=_any(self._frustration, stripped),
            staff_topic=next(
                (topic for topic, ps in self._staff_topics.items() if _any(ps, stripped)), None
            ),
            small_talk=small_talk,
            products=self.mentioned_products(stripped),
            refers_to_other=bool(OTHER_ONE.search(stripped)),
            looks_like_follow_up=word_count <= 8
            and bool(FOLLOW_UP_START.match(stripped) or REFERRING_WORD.search(stripped)),
        )

    def mentioned_products(self, text: str) -> tuple[str, ...]:
        return tuple(pid for pid, pattern in self._product_patterns if pattern.search(text))

    def others_of_kind(self, product_id: str) -> list[str]:
        """Products of the same kind as `product_id` ("the other model")."""
        product = next((p for p in self.products if p.id == product_id), None)
        if product is None:
            return []
        return [
            p.id
            for p in self.products
            if p.id != product_id and (product.kind is None or p.kind == product.kind)
        ]

    def replace_mentions(self, text: str, product_id: str, by: str) -> str:
        pattern = next((p for pid, p in self._product_patterns if pid == product_id), None)
        return pattern.sub(by, text) if pattern is not None else text


def _compile(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    return [re.compile(pattern, re.IGNORECASE) for pattern in patterns]


def _any(patterns: Iterable[re.Pattern[str]], text: str) -> bool:
    return any(pattern.search(text) for pattern in patterns)


_CLAUSES = re.compile(r"(?<=[.!?;])\s+|\n+|,\s*(?:but|and|so)\s+|\s+but\s+", re.I)
# Least cosine between a sentence and an example phrase for the sentence to mean the same.
MEANING_THRESHOLD = 0.72
# Own-case staff questions speak of "my" order, "we" ordered, "you" charged "me".
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|me|my|mine|we|our|us)\b", re.I)


def clauses(text: str) -> list[str]:
    """The sentences and clauses of a message worth matching by meaning on their own."""
    parts = [part.strip() for part in _CLAUSES.split(text) if part and part.strip()]
    return [part for part in parts if len(words(part)) >= 2]


@dataclass(frozen=True)
class MeaningSignals:
    human_requested: bool
    frustrated: bool
    staff_topic: str | None
    # The message's vector, for the search to reuse.
    text: str = ""
    vector: list[float] | None = None
    # How likely the message is about the customer's own records (see staff_model), and the
    # staff topic whose example phrases it is closest to.
    staff_probability: float = 0.0
    nearest_staff_topic: str | None = None


class MeaningReader:
    """Recognises requests for a person, frustration and staff topics by meaning: a clause of
    the message close to one of the example phrases (shipped, plus the brand's own)."""

    def __init__(
        self, settings: Settings, embedder: Embedder, staff_model: StaffTopicModel | None = None
    ):
        from gigcx.bot import phrases

        self._embedder = embedder
        self._staff_model = staff_model
        self._labels: list[str] = []
        texts: list[str] = []
        groups: dict[str, list[str]] = {
            "human": [*phrases.HUMAN_REQUEST, *settings.bot.examples.human_request],
            "frustration": [*phrases.FRUSTRATION, *settings.bot.examples.frustration],
        }
        staff_topics = set(phrases.STAFF_TOPICS) | set(settings.routing.staff_examples)
        for topic in sorted(staff_topics):
            groups[f"staff:{topic}"] = [
                *phrases.STAFF_TOPICS.get(topic, []),
                *settings.routing.staff_examples.get(topic, []),
            ]
        for label, examples in groups.items():
            texts.extend(examples)
            self._labels.extend([label] * len(examples))
        self._texts = texts
        self._vectors: np.ndarray | None = None
        self._staff_examples = [
            n for n, label in enumerate(self._labels) if label.startswith("staff:")
        ]

    def _examples(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = np.asarray(
                self._embedder.embed_documents(self._texts), dtype=np.float32
            )
        return self._vectors

    def read(self, text: str) -> MeaningSignals:
        parts = clauses(text)
        if not parts:
            return MeaningSignals(False, False, None)
        whole = parts == [text]
        if whole:
            # One clause: embedded like a search query, so it joins the batch of queries asked
            # at the same moment, and the search reuses it.
            vectors = np.asarray([self._embedder.embed_query(text)], dtype=np.float32)
            message = vectors[0]
        else:
            embedded = np.asarray(self._embedder.embed_documents([*parts, text]), dtype=np.float32)
            vectors, message = embedded[:-1], embedded[-1]
        similarity = vectors @ self._examples().T  # (clauses, examples)
        best: dict[str, float] = {}
        for clause_number, part in enumerate(parts):
            first_person = bool(_FIRST_PERSON.search(part))
            for example_number, label in enumerate(self._labels):
                if label.startswith("staff:") and not first_person:
                    continue  # "how do returns work?" is policy, not the customer's own case
                score = float(similarity[clause_number, example_number])
                if score > best.get(label, 0.0):
                    best[label] = score
        matched = {label for label, score in best.items() if score >= MEANING_THRESHOLD}
        staff = [label for label in matched if label.startswith("staff:")]
        staff_examples = self._staff_examples
        nearest = (
            self._labels[staff_examples[int(np.argmax(similarity[:, staff_examples].max(0)))]]
            if staff_examples
            else None
        )
        vector = [float(v) for v in message]
        return MeaningSignals(
            human_requested="human" in matched,
            frustrated="frustration" in matched,
            staff_topic=max(staff, key=lambda label: best[label])[6:] if staff else None,
            text=text,
            vector=vector,
            staff_probability=self.staff_probability(text, vector),
            nearest_staff_topic=nearest[6:] if nearest else None,
        )

    def staff_probability(self, text: str, vector: Sequence[float] | None = None) -> float:
        """How likely `text` is about the customer's own records; 0 without a model."""
        if self._staff_model is None or not text.strip():
            return 0.0
        if vector is None:
            vector = self._embedder.embed_query(text)
        return self._staff_model.probability(text, vector)
