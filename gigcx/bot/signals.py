"""What a customer's words alone tell the bot: a request for a person, frustration, a topic
that needs the customer's records, small talk, products named, and whether it is a follow-up.

The phrase lists come from the brand's `gigcx.yaml` (with sensible defaults), as regular
expressions matched case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gigcx.config import ProductSettings, Settings

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
