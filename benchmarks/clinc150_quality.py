"""Answer-or-escalate quality on CLINC150 (Larson et al. 2019), data nobody here wrote.

Builds a knowledge base from the train split (one FAQ entry per intent, its 100 training
utterances as alternatives, a one-line answer naming the intent), syncs it with the real
`gigcx knowledge sync` code, and runs every val and test query through the bot's decision
(`FrontLineBot.decide` with the shipped answerability model, no LLM), and reports
the test split at the shipped operating point and at an answerability threshold tuned on the
val split only (the answerability model saw CLINC150's val split in training, never test):

- in-scope accuracy: in-scope queries answered with their own intent's entry;
- out-of-scope recall: out-of-scope queries escalated (not answered);

side by side with the published baselines. The bot's built-in small talk replies count as
right for CLINC's greeting / goodbye / thank_you intents and as wrong anywhere else.

Run: .venv/bin/python benchmarks/clinc150_quality.py   (about 5 minutes on 2 cores)
Writes benchmarks/out/clinc150_quality.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from gigcx.bot.answerability import load_model
from gigcx.bot.decision import FrontLineBot
from gigcx.config import BotSettings, IndexSettings, KnowledgeSettings, RoutingSettings, Settings
from gigcx.knowledge import open_index, sync_knowledge

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "clinc150"
OUT = REPO / "benchmarks" / "out"
SMALL_TALK_INTENTS = {"greeting": "greeting", "goodbye": "thanks", "thank_you": "thanks"}

# Larson et al. 2019, "An Evaluation Dataset for Intent Classification and Out-of-Scope
# Prediction", Table 2, Full dataset, classifiers trained with the oos-train examples
# (in-scope accuracy, out-of-scope recall, percent). Quoted from the paper; re-check there.
PUBLISHED = [
    ("FastText", 89.0, 9.7),
    ("SVM", 91.0, 14.5),
    ("CNN", 91.2, 18.9),
    ("DialogFlow", 91.7, 14.0),
    ("Rasa", 91.5, 45.3),
    ("MLP", 93.5, 47.4),
    ("BERT", 96.9, 40.3),
]

console = Console()


def humanize(intent: str) -> str:
    return intent.replace("_", " ")


def build_knowledge(folder: Path, train: list[list[str]], domains: dict[str, list[str]]) -> None:
    """One FAQ file per domain; one entry per intent with its training utterances."""
    by_intent: dict[str, list[str]] = defaultdict(list)
    for utterance, intent in train:
        by_intent[intent].append(utterance)
    folder.mkdir(parents=True, exist_ok=True)
    for domain, intents in domains.items():
        entries = [
            {
                "question": humanize(intent),
                "alternatives": by_intent[intent],
                "answer": f"This is the answer for the '{intent}' intent.",
                "tags": [intent],
            }
            for intent in intents
        ]
        text = yaml.safe_dump(entries, sort_keys=False, allow_unicode=True)
        path = folder / f"{domain}.faq.yml"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


@dataclass(frozen=True)
class Outcome:
    truth: str  # intent, or "oos"
    action: str  # answer | small_talk | escalate | clarify (with answering at any confidence)
    predicted: str | None  # intent of the best passage
    confidence: float  # the answerability of the best passage

    def answered(self, threshold: float) -> bool:
        if self.action == "small_talk":
            return True
        return self.action == "answer" and self.confidence >= threshold

    def correct_in_scope(self, threshold: float) -> bool:
        if self.action == "small_talk":
            return self.truth in SMALL_TALK_INTENTS
        return self.answered(threshold) and self.predicted == self.truth


def run(bot: FrontLineBot, queries: list[list[str]], label: str) -> list[Outcome]:
    outcomes = []
    started = time.perf_counter()
    for text, truth in queries:
        decision = bot.decide(text)
        hits = decision.hits
        outcomes.append(
            Outcome(
                truth=truth,
                action=decision.action,
                predicted=hits[0].tags[0] if hits and hits[0].tags else None,
                confidence=decision.confidence,
            )
        )
    elapsed = time.perf_counter() - started
    console.print(f"{label}: {len(queries)} queries in {elapsed:.0f} s")
    return outcomes


def rates(outcomes: list[Outcome], threshold: float) -> tuple[float, float]:
    in_scope = [o for o in outcomes if o.truth != "oos"]
    oos = [o for o in outcomes if o.truth == "oos"]
    accuracy = sum(o.correct_in_scope(threshold) for o in in_scope) / len(in_scope)
    recall = sum(not o.answered(threshold) for o in oos) / len(oos)
    return accuracy, recall


def tune(outcomes: list[Outcome]) -> tuple[float, float, float]:
    """The answerability threshold with the best mean of in-scope accuracy and oos recall."""
    best = (0.0, 0.0, 0.0)
    for step in range(1, 100):
        threshold = step / 100
        accuracy, recall = rates(outcomes, threshold)
        if (accuracy + recall) / 2 > (best[1] + best[2]) / 2:
            best = (threshold, accuracy, recall)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=OUT / "clinc150", help="Scratch folder.")
    args = parser.parse_args()
    data = json.loads((DATA / "data_full.json").read_text())
    domains = json.loads((DATA / "domains.json").read_text())
    knowledge = args.work / "knowledge"
    build_knowledge(knowledge, data["train"], domains)

    def bot_for(threshold: float | None) -> FrontLineBot:
        settings = Settings(
            brand="clinc150",
            knowledge=KnowledgeSettings(path=knowledge),
            index=IndexSettings(path=args.work / "index"),
            # A brand with no staff: every escalation goes to the expert pool.
            routing=RoutingSettings(staff_topics={}),
            bot=BotSettings(answer_threshold=threshold, related_threshold=0.0),
        )
        return FrontLineBot(settings, open_index(settings), load_model())

    probe = bot_for(0.0)
    started = time.perf_counter()
    report = sync_knowledge(knowledge, probe.index)
    console.print(
        f"knowledge: {report.chunks_embedded} chunks embedded, {probe.index.count()} in the "
        f"index ({time.perf_counter() - started:.0f} s)"
    )
    val = run(probe, data["val"] + data["oos_val"], "val")
    tuned_threshold, val_accuracy, val_recall = tune(val)
    shipped = bot_for(None)
    rows = []
    for name, bot in (
        (f"shipped operating point {shipped.threshold:.2f}", shipped),
        (f"answerability threshold {tuned_threshold:.2f} tuned on val", bot_for(tuned_threshold)),
    ):
        final = run(bot, data["test"] + data["oos_test"], f"test ({name})")
        accuracy, recall = rates(final, bot.threshold)
        rows.append(
            {
                "system": name,
                "in_scope_accuracy": round(accuracy, 4),
                "out_of_scope_recall": round(recall, 4),
            }
        )
    ceiling = sum(o.predicted == o.truth for o in final if o.truth != "oos") / sum(
        o.truth != "oos" for o in final
    )

    table = Table(title="CLINC150 test split (full): answer or escalate", title_justify="left")
    table.add_column("system")
    table.add_column("in-scope accuracy", justify="right")
    table.add_column("out-of-scope recall", justify="right")
    for row in rows:
        table.add_row(
            f"gigcx quote mode, {row['system']}",
            f"{row['in_scope_accuracy']:.1%}",
            f"{row['out_of_scope_recall']:.1%}",
        )
    for name, published_accuracy, published_recall in PUBLISHED:
        table.add_row(
            f"{name} (Larson et al. 2019)", f"{published_accuracy}%", f"{published_recall}%"
        )
    console.print(table)
    console.print(f"Best-passage accuracy with no threshold (the ceiling): {ceiling:.1%}")
    OUT.mkdir(parents=True, exist_ok=True)
    result = {
        "rows": rows,
        "val": {"threshold": tuned_threshold, "in_scope": val_accuracy, "oos_recall": val_recall},
        "nearest_entry_accuracy": round(ceiling, 4),
        "published": [
            {"system": n, "in_scope_accuracy": a, "out_of_scope_recall": r} for n, a, r in PUBLISHED
        ],
    }
    (OUT / "clinc150_quality.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
