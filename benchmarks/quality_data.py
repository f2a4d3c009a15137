"""What the answer decision is trained and checked on: questions asked of a brand's knowledge,
with the topics the retrieval found and which of them answer.

Used by train_answerability.py. Sources:
- every example brand under examples/ with a cases.jsonl: its cases, run through the real front
  line (`gigcx eval`'s code path) with a bot that answers whatever it retrieves, so every case
  that reaches the answer decision shows what was found;
- CLINC150's train split as knowledge (one FAQ entry per intent) and a sample of its val split
  as questions, with its out-of-scope val and train queries (../shared/data/clinc150,
  CC BY 3.0). The test split is never read here.
MTRAG-UN is never used: it stays unseen, for benchmarks/mtrag_quality.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from gigcx.app import start
from gigcx.bot.answerability import FEATURE_NAMES, AnswerabilityModel
from gigcx.bot.decision import FrontLineBot
from gigcx.config import (
    BotSettings,
    IndexSettings,
    KnowledgeSettings,
    RoutingSettings,
    Settings,
    StoreSettings,
    load_settings,
)
from gigcx.evaluation import CaseResult, read_cases, run_eval
from gigcx.knowledge import SearchHit, open_index, sync_knowledge

REPO = Path(__file__).resolve().parent.parent
CLINC = REPO.parent / "shared" / "data" / "clinc150"
CLINC_QUESTIONS = 1200

# A model that answers whatever it retrieves, to see every question's evidence.
ANSWER_ALL = AnswerabilityModel(
    mean=(0.0,) * len(FEATURE_NAMES),
    scale=(1.0,) * len(FEATURE_NAMES),
    coef=(0.0,) * len(FEATURE_NAMES),
    intercept=0.0,
    threshold=0.0,
)


@dataclass
class Asked:
    """One question put to the knowledge, the topics found for it, and which answer it."""

    source: str  # the brand, or "clinc150"
    question: str  # what was searched (follow-ups include the earlier question)
    hits: list[SearchHit]
    right: list[bool]  # per hit: does it answer the question?
    expect: str  # answer | escalate | clarify (brands) ; answer | oos (CLINC)
    product: str | None = None  # the product the question named
    case: CaseResult | None = field(default=None, repr=False)


@dataclass
class BrandRun:
    name: str
    results: list[CaseResult]  # every case, for the metrics
    asked: list[Asked]  # the cases that reached the answer decision


def brand_folders() -> list[Path]:
    return sorted(p.parent for p in (REPO / "examples").glob("*/cases.jsonl"))


async def run_brand(folder: Path, scratch: Path) -> BrandRun:
    settings = load_settings(folder / "gigcx.yaml")
    settings = settings.model_copy(
        update={
            "index": IndexSettings(path=scratch / "index"),
            "store": StoreSettings(url=f"sqlite:///{scratch / 'eval.db'}"),
            "bot": settings.bot.model_copy(update={"answer_threshold": 0.0}),
        }
    )
    index = open_index(settings)
    sync_knowledge(settings.knowledge.path, index)
    cases = read_cases(folder / "cases.jsonl", settings.knowledge.path)
    runtime = await start(settings, answerability=ANSWER_ALL)
    try:
        report = await run_eval(runtime, cases)
    finally:
        await runtime.close()
    asked = []
    for result in report.results:
        decision = result.decision
        if decision is None or decision.action != "answer" or not decision.hits:
            continue  # decided by the words alone (a person asked for, a staff topic, ...)
        hits = list(decision.hits)
        asked.append(
            Asked(
                source=folder.name,
                question=decision.query,
                hits=hits,
                right=[hit.path in result.case.sources for hit in hits],
                expect=result.case.expect,
                product=decision.asked_product,
                case=result,
            )
        )
    return BrandRun(folder.name, report.results, asked)


def run_clinc(scratch: Path) -> list[Asked]:
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
    in_scope = [data["val"][i] for i in rng.permutation(len(data["val"]))[:CLINC_QUESTIONS]]
    asked = []
    for text, truth in in_scope + data["oos_val"] + data["oos_train"]:
        decision = bot.decide(text)
        if decision.action != "answer" or not decision.hits:
            continue
        hits = list(decision.hits)
        right = [truth != "oos" and bool(h.tags) and h.tags[0] == truth for h in hits]
        expect = "oos" if truth == "oos" else "answer"
        asked.append(Asked("clinc150", decision.query, hits, right, expect))
    return asked
