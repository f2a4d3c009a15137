"""How likely a customer's message is about their own records (an order, a refund, a charge,
their account): a staff topic, which only the brand's staff can look into.

A logistic regression over the message's all-MiniLM-L6-v2 vector and three plain signals (a
reference number, an amount of money, first-person words), trained by
`benchmarks/train_staff_model.py` and shipped as `staff_model.json`. It needs the vectors of the
model it was trained with: a brand on another embedding model gets no model (the phrase lists
and example phrases still route).

Two operating points: `threshold`, at which an escalation goes to staff rather than to the
experts, and `strong`, at which the bot does not even try to answer from the knowledge.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from gigcx.bot.model_file import read_model_file
from gigcx.config import LOCAL_EMBEDDING_MODEL

MODEL_FILE = Path(__file__).with_name("staff_model.json")
FEATURES_VERSION = 1
EMBEDDING_MODEL = f"local:{LOCAL_EMBEDDING_MODEL}"
REBUILD = ".venv/bin/python benchmarks/train_staff_model.py"

_REFERENCE = re.compile(
    r"\b(?=[a-z-]*\d)(?=[\d-]*[a-z])[a-z0-9-]{4,}\b|\b\d{4,}\b|#\s?\d+", re.IGNORECASE
)
_MONEY = re.compile(
    r"[$€£]\s?\d|\b\d+[.,]\d{2}\b|\b\d+\s?(?:dollars?|euros?|pounds?|usd|eur|gbp)\b",
    re.IGNORECASE,
)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|im|i've|ive|me|my|mine|we|our|us)\b", re.IGNORECASE)
WORD_FEATURES = ("reference_number", "money", "first_person")


def word_features(text: str) -> tuple[float, ...]:
    return (
        float(bool(_REFERENCE.search(text))),
        float(bool(_MONEY.search(text))),
        float(bool(_FIRST_PERSON.search(text))),
    )


class StaffModelError(Exception):
    """The shipped staff-topic model is missing, unreadable or for another version."""


@dataclass(frozen=True)
class StaffTopicModel:
    coef: tuple[float, ...]  # one per vector dimension, then one per word feature
    intercept: float
    threshold: float
    strong: float
    embedding_model: str = EMBEDDING_MODEL
    trained_on: tuple[str, ...] = ()

    def probability(self, text: str, vector: Sequence[float]) -> float:
        values = (*vector, *word_features(text))
        if len(values) != len(self.coef):
            raise ValueError(f"expected a {len(self.coef) - 3}-dimension vector, got {len(vector)}")
        z = self.intercept + float(self._weights @ np.asarray(values, dtype=np.float64))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    @cached_property
    def _weights(self) -> np.ndarray:
        return np.asarray(self.coef, dtype=np.float64)

    def to_dict(self) -> dict[str, object]:
        return {
            "features_version": FEATURES_VERSION,
            "embedding_model": self.embedding_model,
            "word_features": list(WORD_FEATURES),
            "coef": [round(value, 6) for value in self.coef],
            "intercept": self.intercept,
            "threshold": self.threshold,
            "strong": self.strong,
            "trained_on": list(self.trained_on),
        }


def staff_model_for(embedding_model: str, path: Path = MODEL_FILE) -> StaffTopicModel | None:
    """The shipped model when the brand embeds with the model it was trained on, else None."""
    if embedding_model != EMBEDDING_MODEL:
        return None
    return load_staff_model(path)


def load_staff_model(path: Path = MODEL_FILE) -> StaffTopicModel:
    """The trained model, or StaffModelError saying how to rebuild it."""
    return _load(str(path))


@lru_cache(maxsize=4)
def _load(path: str) -> StaffTopicModel:
    return read_model_file(
        Path(path),
        "staff-topic model",
        REBUILD,
        StaffModelError,
        FEATURES_VERSION,
        lambda data: data.get("word_features") == list(WORD_FEATURES),
        lambda data: StaffTopicModel(
            coef=tuple(float(v) for v in data["coef"]),
            intercept=float(data["intercept"]),
            threshold=float(data["threshold"]),
            strong=float(data["strong"]),
            embedding_model=str(data["embedding_model"]),
            trained_on=tuple(str(v) for v in data.get("trained_on", [])),
        ),
    )
