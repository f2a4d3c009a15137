"""Train the answerability model the bot ships with (gigcx/bot/answerability.json).

Data: quality_data.py (the example brands and CLINC150's val split; never CLINC's test split,
never MTRAG-UN). The model is a logistic regression over the evidence signals, each source
weighted equally whatever its size. Its operating point is the lowest probability at which the
training brands' answers from a wrong passage stay within WRONG_ANSWER_BUDGET of the questions
reaching the decision.

`--leave-out` also reports every brand with a model trained without it (its cases left out
of all training): the figures in the README.

Run: .venv/bin/python benchmarks/train_answerability.py [--leave-out] [--no-write]
(about 6 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

import numpy as np
from quality_data import REPO, Asked, BrandRun, brand_folders, run_brand, run_clinc
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from gigcx.bot.answerability import FEATURE_NAMES, MODEL_FILE, AnswerabilityModel, features

# The share of the questions reaching the answer decision that may be answered wrongly: the
# target is at most 3% of all cases, and some cases never reach this decision.
WRONG_ANSWER_BUDGET = 0.04


class Sample:
    """One question's evidence for its best topic, and whether that topic answers it."""

    def __init__(self, asked: Asked) -> None:
        self.asked = asked
        self.source = asked.source
        self.features = features(asked.hits, asked.product) or {}
        self.top = asked.hits[0]
        self.label = int(asked.expect == "answer" and asked.right[0])


def fit(samples: list[Sample]) -> AnswerabilityModel:
    x = np.array([[s.features[name] for name in FEATURE_NAMES] for s in samples])
    y = np.array([s.label for s in samples])
    sources = [s.source for s in samples]
    counts = {source: sources.count(source) for source in set(sources)}
    weights = np.array([1.0 / counts[source] for source in sources]) * len(samples)
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    model = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")
    model.fit((x - scaler.mean_) / scale, y, sample_weight=weights)
    fitted = AnswerabilityModel(
        mean=tuple(float(v) for v in scaler.mean_),
        scale=tuple(float(v) for v in scale),
        coef=tuple(float(v) for v in model.coef_[0]),
        intercept=float(model.intercept_[0]),
        threshold=0.5,
        trained_on=tuple(sorted(counts)),
    )
    brands = [s for s in samples if s.source != "clinc150"] or samples
    return AnswerabilityModel(**{**fitted.__dict__, "threshold": operating_point(fitted, brands)})


def operating_point(model: AnswerabilityModel, samples: list[Sample]) -> float:
    probabilities = [model.probability(s.features) for s in samples]
    for step in range(5, 96):
        threshold = step / 100
        wrong = sum(
            1 for s, p in zip(samples, probabilities, strict=True) if p >= threshold and not s.label
        )
        if wrong <= WRONG_ANSWER_BUDGET * len(samples):
            return threshold
    return 0.95


def simulate(model: AnswerabilityModel, run: BrandRun, samples: list[Sample]) -> dict[str, float]:
    """`gigcx eval`'s metrics had the bot used this model (last turn only)."""
    by_case = {id(s.asked.case): s for s in samples}
    answerable = escalations = right = wrong = escalated = 0
    for result in run.results:
        sample = by_case.get(id(result))
        answered, right_source = result.answered, result.right_source
        if sample is not None:
            answered = model.probability(sample.features) >= model.threshold
            right_source = answered and sample.top.path in result.case.sources
        expect = result.case.expect
        answerable += expect == "answer"
        escalations += expect == "escalate"
        if expect == "answer":
            right += right_source
            wrong += answered and not right_source
        elif answered:
            wrong += 1
        elif expect == "escalate":
            escalated += 1
    labels = [s.label for s in samples]
    scores = [model.probability(s.features) for s in samples]
    return {
        "deflection": round(right / max(1, answerable), 3),
        "wrong_answer_rate": round(wrong / max(1, len(run.results)), 3),
        "escalation_recall": round(escalated / max(1, escalations), 3),
        "auc": round(roc_auc_score(labels, scores), 3) if 0 < sum(labels) < len(labels) else 0.0,
        "cases": len(run.results),
    }


def samples_of(runs: list[BrandRun], clinc: list[Asked]) -> list[Sample]:
    return [Sample(a) for run in runs for a in run.asked] + [Sample(a) for a in clinc]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leave-out", action="store_true", help="Report each brand held out.")
    parser.add_argument("--no-write", action="store_true", help="Do not write the model files.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gigcx-train-") as scratch:
        root = Path(scratch)
        runs = []
        for folder in brand_folders():
            runs.append(await run_brand(folder, root / folder.name))
            print(f"{folder.name}: {len(runs[-1].results)} cases")
        clinc = run_clinc(root / "clinc150")
        print(f"clinc150: {len(clinc)} queries")
    if args.leave_out:
        for run in runs:
            others = [other for other in runs if other.name != run.name]
            model = fit(samples_of(others, clinc))
            held_out = [Sample(a) for a in run.asked]
            print(
                f"  {run.name} (left out, point {model.threshold:.2f}): "
                f"{simulate(model, run, held_out)}"
            )
    model = fit(samples_of(runs, clinc))
    print("trained on", ", ".join(model.trained_on), f"operating point {model.threshold:.2f}")
    for name, coef in zip(FEATURE_NAMES, model.coef, strict=True):
        print(f"  {name:18} {coef:+.3f}")
    for run in runs:
        samples = [Sample(a) for a in run.asked]
        print(f"  {run.name} (trained on): {simulate(model, run, samples)}")
    if not args.no_write:
        MODEL_FILE.write_text(json.dumps(model.to_dict(), indent=2) + "\n")
        print(f"wrote {MODEL_FILE.relative_to(REPO)}")


if __name__ == "__main__":
    asyncio.run(main())
