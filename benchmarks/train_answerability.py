"""Train the answerability model the bot ships with (gigcx/bot/answerability.json).

Data (each source weighted equally, whatever its size):
- every example brand under examples/ that has a cases.jsonl: each case runs through the real
  front line (`gigcx eval`'s code path) with a bot that answers everything it retrieves, and
  the evidence for its best passage is labelled 1 when the case expects an answer from that
  file, 0 when it expects an escalation or the file is wrong;
- CLINC150's val split (../shared/data/clinc150, CC BY 3.0) over a knowledge base made from its
  train split (as in benchmarks/clinc150_quality.py): in-scope queries whose best entry is
  their intent are 1, out-of-scope queries and wrong entries are 0. Its test split is never
  read here.

MTRAG-UN is not used: it stays unseen, for benchmarks/mtrag_quality.py.

The operating point is the lowest probability at which the training brands' answers from a
wrong passage stay within WRONG_ANSWER_BUDGET of their answerable-or-near-miss questions.
`--leave-out` reports every brand once with the model trained on
the others (and CLINC150), which is how each brand's figures in the README are made.

Run: .venv/bin/python benchmarks/train_answerability.py [--leave-out] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from gigcx.app import start
from gigcx.bot.answerability import FEATURE_NAMES, MODEL_FILE, AnswerabilityModel
from gigcx.bot.decision import FrontLineBot
from gigcx.bot.evaluation import CaseResult, read_cases, run_eval
from gigcx.config import (
    BotSettings,
    IndexSettings,
    KnowledgeSettings,
    RoutingSettings,
    Settings,
    StoreSettings,
    load_settings,
)
from gigcx.knowledge import open_index, sync_knowledge

REPO = Path(__file__).resolve().parent.parent
CLINC = REPO.parent / "shared" / "data" / "clinc150"
# The share of the questions reaching the answer decision that may be answered wrongly: the
# target is at most 3% of all cases, and some cases never reach this decision.
WRONG_ANSWER_BUDGET = 0.04
CLINC_QUERIES = 1500

# A model that answers whatever it retrieves, to see every case's evidence.
ANSWER_ALL = AnswerabilityModel(
    mean=(0.0,) * len(FEATURE_NAMES),
    scale=(1.0,) * len(FEATURE_NAMES),
    coef=(0.0,) * len(FEATURE_NAMES),
    intercept=0.0,
    threshold=0.0,
)


@dataclass(frozen=True)
class Sample:
    source: str
    features: dict[str, float]
    label: int
    expect: str  # answer | escalate | clarify (brands); answer | oos (CLINC)


def brand_folders() -> list[Path]:
    return sorted(p.parent for p in (REPO / "examples").glob("*/cases.jsonl"))


async def brand_results(folder: Path, scratch: Path) -> list[CaseResult]:
    """Every case of the brand, run with a bot that answers all it retrieves."""
    settings = load_settings(folder / "gigcx.yaml")
    settings = settings.model_copy(
        update={
            "index": IndexSettings(path=scratch / "index"),
            "store": StoreSettings(url=f"sqlite:///{scratch / 'eval.db'}"),
            "bot": settings.bot.model_copy(update={"answer_threshold": 0.0}),
        }
    )
    sync_knowledge(settings.knowledge.path, open_index(settings))
    cases = read_cases(folder / "cases.jsonl", settings.knowledge.path)
    runtime = await start(settings, answerability=ANSWER_ALL)
    try:
        report = await run_eval(runtime, cases)
    finally:
        await runtime.close()
    return report.results


def brand_samples(name: str, results: list[CaseResult]) -> list[Sample]:
    samples = []
    for result in results:
        decision = result.decision
        if decision is None or decision.action != "answer" or not decision.evidence:
            continue  # decided by the words alone (a person asked for, a staff topic, ...)
        right = result.case.expect == "answer" and result.right_source
        samples.append(Sample(name, decision.evidence, int(right), result.case.expect))
    return samples


def clinc_samples(scratch: Path) -> list[Sample]:
    data = json.loads((CLINC / "data_full.json").read_text())
    domains = json.loads((CLINC / "domains.json").read_text())
    knowledge = scratch / "knowledge"
    by_intent: dict[str, list[str]] = {}
    for utterance, intent in data["train"]:
        by_intent.setdefault(intent, []).append(utterance)
    knowledge.mkdir(parents=True, exist_ok=True)
    for domain, intents in domains.items():
        entries = [
            {
                "question": intent.replace("_", " "),
                "alternatives": by_intent[intent],
                "answer": f"This is the answer for the '{intent}' intent.",
                "tags": [intent],
            }
            for intent in intents
        ]
        (knowledge / f"{domain}.faq.yml").write_text(yaml.safe_dump(entries, sort_keys=False))
    settings = Settings(
        brand="clinc150",
        knowledge=KnowledgeSettings(path=knowledge),
        index=IndexSettings(path=scratch / "index"),
        routing=RoutingSettings(staff_topics={}),
        bot=BotSettings(answer_threshold=0.0, related_threshold=0.0),
    )
    index = open_index(settings)
    sync_knowledge(knowledge, index)
    bot = FrontLineBot(settings, index, ANSWER_ALL)
    rng = np.random.default_rng(11)
    in_scope = [data["val"][i] for i in rng.permutation(len(data["val"]))[:CLINC_QUERIES]]
    queries = in_scope + data["oos_val"]
    samples = []
    for text, truth in queries:
        decision = bot.decide(text)
        if decision.action != "answer" or not decision.evidence:
            continue
        best = decision.hits[0]
        right = truth != "oos" and bool(best.tags) and best.tags[0] == truth
        samples.append(
            Sample("clinc150", decision.evidence, int(right), "oos" if truth == "oos" else "answer")
        )
    return samples


def fit(samples: list[Sample]) -> AnswerabilityModel:
    """Logistic regression, each source weighted equally; operating point on the brands."""
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
    brand_samples_only = [s for s in samples if s.source != "clinc150"] or samples
    return AnswerabilityModel(
        **{**fitted.__dict__, "threshold": operating_point(fitted, brand_samples_only)}
    )


def operating_point(model: AnswerabilityModel, samples: list[Sample]) -> float:
    probabilities = [model.probability(s.features) for s in samples]
    for step in range(5, 96):
        threshold = step / 100
        wrong = sum(
            1
            for s, p in zip(samples, probabilities, strict=True)
            if p >= threshold and s.label == 0
        )
        if wrong <= WRONG_ANSWER_BUDGET * len(samples):
            return threshold
    return 0.95


def simulate(model: AnswerabilityModel, results: list[CaseResult]) -> dict[str, float]:
    """The eval metrics had the bot used `model` (last turn only; `gigcx eval` is the truth)."""
    answerable = [r for r in results if r.case.expect == "answer"]
    escalations = [r for r in results if r.case.expect == "escalate"]
    right = wrong = escalated = 0
    for result in results:
        decision = result.decision
        answered = result.answered
        if answered and decision is not None and decision.evidence:
            answered = model.probability(decision.evidence) >= model.threshold
        if result.case.expect == "answer":
            right += answered and result.right_source
            wrong += answered and not result.right_source
        elif answered:
            wrong += 1
        elif result.case.expect == "escalate":
            escalated += 1
    return {
        "deflection": round(right / max(1, len(answerable)), 3),
        "wrong_answer_rate": round(wrong / max(1, len(results)), 3),
        "escalation_recall": round(escalated / max(1, len(escalations)), 3),
        "cases": len(results),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leave-out", action="store_true", help="Report each brand held out.")
    parser.add_argument("--no-write", action="store_true", help="Do not write the model file.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gigcx-train-") as scratch:
        root = Path(scratch)
        results = {}
        for folder in brand_folders():
            results[folder.name] = await brand_results(folder, root / folder.name)
            print(f"{folder.name}: {len(results[folder.name])} cases")
        clinc = clinc_samples(root / "clinc150")
        print(f"clinc150: {len(clinc)} queries")
    samples = {name: brand_samples(name, res) for name, res in results.items()}
    everything = [s for group in samples.values() for s in group] + clinc
    model = fit(everything)
    print("trained on", ", ".join(model.trained_on), f"operating point {model.threshold:.2f}")
    for name, coef in zip(FEATURE_NAMES, model.coef, strict=True):
        print(f"  {name:18} {coef:+.3f}")
    for name, res in results.items():
        print(f"  {name} (trained on): {simulate(model, res)}")
    if args.leave_out:
        for name, res in results.items():
            others = [s for other, group in samples.items() if other != name for s in group]
            held_out = fit(others + clinc)
            print(
                f"  {name} (left out, threshold {held_out.threshold:.2f}): "
                f"{simulate(held_out, res)}"
            )
    if not args.no_write:
        MODEL_FILE.write_text(json.dumps(model.to_dict(), indent=2) + "\n")
        print(f"wrote {MODEL_FILE.relative_to(REPO)}")


if __name__ == "__main__":
    asyncio.run(main())
