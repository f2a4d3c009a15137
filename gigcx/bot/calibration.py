"""The answer decision checked on one brand's own knowledge, at sync time.

Each customer wording of the knowledge (`questions:` entries, FAQ questions and alternatives)
is asked as if the knowledge did not list it (leave-one-out): the rest of the knowledge should
still answer it from its own topic. Answers from another topic are wrong answers this brand
would give; when there are too many, the brand's operating point is raised (never lowered: the
brand's own wordings are easier than its customers' questions) and kept with the index, where
every server process reads it.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from gigcx.bot.answerability import CALIBRATION_NOTE, features

if TYPE_CHECKING:
    from gigcx.bot.decision import FrontLineBot

MAX_WORDINGS = 200
LEAST_WORDINGS = 8  # fewer, and the check says what it found but changes nothing
WRONG_SHARE = 0.1  # of the wordings, answered from another topic
MAX_RAISE = 0.15  # the most the check moves the shipped operating point


@dataclass(frozen=True)
class Calibration:
    checked: int
    answered_right: int
    answered_wrong: int
    escalated: int
    shipped_threshold: float
    threshold: float
    note: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def calibrate(bot: FrontLineBot) -> Calibration:
    """Check the decision on the brand's own wordings; keep and return what was found."""
    shipped = bot.model.threshold
    wordings = bot.index.public_wordings()
    if len(wordings) > MAX_WORDINGS:
        wordings = random.Random(7).sample(wordings, MAX_WORDINGS)
    found: list[tuple[float, bool]] = []  # (answerability, from its own topic)
    for wording in wordings:
        hits = bot.search(wording.question, wording.product, leave_out=wording.question)
        if not hits:
            found.append((0.0, False))
            continue
        probability = bot.model.probability(features(hits, wording.product) or {})
        found.append((probability, hits[0].unit == wording.unit))
    threshold = shipped
    if not found:
        note = "no questions: or FAQ wordings to check against; using the shipped operating point"
    elif len(found) < LEAST_WORDINGS:
        note = (
            f"only {len(found)} questions: or FAQ wordings: too few to calibrate on; "
            "using the shipped operating point"
        )
    else:
        threshold = _raised(found, shipped)
        note = (
            "kept the shipped operating point"
            if threshold == shipped
            else "too many wordings were answered from another topic: raised the operating point"
        )
    result = Calibration(
        checked=len(found),
        answered_right=sum(1 for p, own in found if p >= threshold and own),
        answered_wrong=sum(1 for p, own in found if p >= threshold and not own),
        escalated=sum(1 for p, _own in found if p < threshold),
        shipped_threshold=shipped,
        threshold=threshold,
        note=note,
    )
    bot.index.write_note(CALIBRATION_NOTE, result.to_dict())
    return result


def _raised(found: list[tuple[float, bool]], shipped: float) -> float:
    threshold = shipped
    while threshold < shipped + MAX_RAISE:
        wrong = sum(1 for p, own in found if p >= threshold and not own)
        if wrong <= WRONG_SHARE * len(found):
            break
        threshold = round(threshold + 0.01, 2)
    return threshold
