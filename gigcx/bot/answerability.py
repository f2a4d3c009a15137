"""Does the best passage answer the question? A small logistic model over evidence signals.

Topical similarity alone does not separate "covered" from "near-miss" (a question about a
detail the knowledge never mentions scores almost as high as one it answers). The model weighs
several signals of the retrieval: meaning (cosines), words (how much of the question's specific
vocabulary the passage holds, and the most specific word it lacks), agreement between the two
rankings, the margin to the next passage, and product agreement.

The weights ship in `answerability.json`, trained by `benchmarks/train_answerability.py` on
several example brands and public data (see README). Nothing is downloaded or trained at run
time; a missing or outdated file is refused with the command that rebuilds it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gigcx.bot.model_file import read_model_file
from gigcx.knowledge import KnowledgeIndex, SearchHit

# Bumped whenever the features below change: a model trained on other features is refused.
FEATURES_VERSION = 1
MODEL_FILE = Path(__file__).with_name("answerability.json")
REBUILD = ".venv/bin/python benchmarks/train_answerability.py"
# The index note where a brand's calibrated operating point is kept (see gigcx.bot.calibration).
CALIBRATION_NOTE = "calibration"

FEATURE_NAMES = (
    "dense",
    "question_dense",
    "section_dense",
    "coverage",
    "section_coverage",
    "missing_specific",
    "unknown",
    "margin",
    "rank_agreement",
    "lexical_rank",
    "query_terms",
    "product_match",
)


class AnswerabilityModelError(Exception):
    """The shipped model file is missing, unreadable or for other features."""


def features(hits: Sequence[SearchHit], product: str | None) -> dict[str, float] | None:
    """The evidence that the first hit answers the question, as named numbers (None: no hit)."""
    if not hits or hits[0].evidence is None:
        return None
    best = hits[0]
    evidence = best.evidence
    assert evidence is not None
    second = hits[1].score if len(hits) > 1 else 0.0
    if product is None:
        product_match = 0.5
    else:
        product_match = 1.0 if best.product == product else 0.75 if best.product is None else 0.0
    return {
        "dense": evidence.dense,
        "question_dense": evidence.question_dense,
        "section_dense": evidence.section_dense,
        "coverage": evidence.coverage,
        "section_coverage": evidence.section_coverage,
        "missing_specific": evidence.missing_specific,
        "unknown": evidence.unknown,
        "margin": best.score - second,
        "rank_agreement": 1.0 if evidence.dense_rank == 0 and evidence.lexical_rank == 0 else 0.0,
        "lexical_rank": 1.0 / (1.0 + evidence.lexical_rank),
        "query_terms": math.log1p(evidence.query_terms),
        "product_match": product_match,
    }


@dataclass(frozen=True)
class AnswerabilityModel:
    """Standardised logistic regression; `threshold` is the shipped operating point."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    trained_on: tuple[str, ...] = ()

    def probability(self, values: dict[str, float]) -> float:
        z = self.intercept
        for name, mean, scale, weight in zip(
            FEATURE_NAMES, self.mean, self.scale, self.coef, strict=True
        ):
            z += weight * (values[name] - mean) / scale
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def to_dict(self) -> dict[str, object]:
        return {
            "features_version": FEATURES_VERSION,
            "features": list(FEATURE_NAMES),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "threshold": self.threshold,
            "trained_on": list(self.trained_on),
        }


def load_model(path: Path = MODEL_FILE) -> AnswerabilityModel:
    """The trained model, or AnswerabilityModelError saying how to rebuild it."""
    return _load(str(path))


@lru_cache(maxsize=4)
def _load(path: str) -> AnswerabilityModel:
    return read_model_file(
        Path(path),
        "answerability model",
        REBUILD,
        AnswerabilityModelError,
        FEATURES_VERSION,
        lambda data: data.get("features") == list(FEATURE_NAMES),
        lambda data: AnswerabilityModel(
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
            coef=tuple(float(v) for v in data["coef"]),
            intercept=float(data["intercept"]),
            threshold=float(data["threshold"]),
            trained_on=tuple(str(v) for v in data.get("trained_on", [])),
        ),
    )


def brand_threshold(index: KnowledgeIndex, shipped: float) -> float:
    """The operating point for this brand: its calibration if one was kept, else shipped."""
    note = index.note(CALIBRATION_NOTE)
    if note is None:
        return shipped
    try:
        return max(shipped, float(note["threshold"]))
    except (KeyError, TypeError, ValueError):
        return shipped
