"""Train the staff-topic model the bot ships with (gigcx/bot/staff_model.json): how likely a
message is about the customer's own records (an order, a refund, a charge, their account).

Data, each source weighted equally whatever its size:
- CLINC150's train split (../shared/data/clinc150, CC BY 3.0): intents about the asker's own
  records (balance, transactions, a blocked account, order status, lost luggage, ...) against
  intents asking for general knowledge (recipes, visas, interest rates, tyre changes, ...).
  Assistant commands (play music, set a timer) are not used. Its test split is never read.
- The example phrases shipped in gigcx/bot/phrases.py.
- Every example brand under examples/: its cases (a single-message case routed to staff against
  every other case's last message) and its knowledge's own `questions:` and FAQ wordings
  (questions the knowledge answers, so not staff topics).

Operating points, from the training brands' messages that are not staff topics: `threshold`
lets through THRESHOLD_SHARE of them (an escalation above it goes to staff), `strong` lets
through STRONG_SHARE (above it the bot does not try to answer).

`--leave-out` also reports every brand with a model trained without it: the figures in the
README.

Run: .venv/bin/python benchmarks/train_staff_model.py [--leave-out] [--no-write]  (about 1 min)
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from gigcx.bot import phrases
from gigcx.bot.staff_model import MODEL_FILE, StaffTopicModel, word_features
from gigcx.knowledge.documents import ChunkingOptions, parse_document, read_raw, scan_folder
from gigcx.knowledge.embeddings import LocalEmbedder

REPO = Path(__file__).resolve().parent.parent
CLINC = REPO.parent / "shared" / "data" / "clinc150"
PER_INTENT = 25
THRESHOLD_SHARE = 0.02
STRONG_SHARE = 0.002
REGULARISATION = 1.0

# CLINC150 intents about the asker's own records: a brand's staff would look these up.
OWN_RECORDS = {
    "account_blocked", "application_status", "balance", "bill_balance", "bill_due",
    "cancel_reservation", "card_declined", "confirm_reservation", "credit_limit",
    "credit_limit_change", "damaged_card", "direct_deposit", "expiration_date",
    "freeze_account", "lost_luggage", "min_payment", "order_status", "pin_change",
    "pto_balance", "pto_request_status", "pto_used", "redeem_rewards", "replacement_card_duration",
    "report_fraud", "report_lost_card", "rewards_balance", "spending_history", "transactions",
}  # fmt: skip
# Intents asking for knowledge anybody could give.
GENERAL_KNOWLEDGE = {
    "accept_reservations", "apr", "book_flight", "book_hotel", "calories", "car_rental",
    "carry_on", "change_language", "cook_time", "credit_score", "definition", "distance",
    "exchange_rate", "food_last", "fun_fact", "gas_type", "how_busy", "improve_credit_score",
    "ingredient_substitution", "ingredients_list", "insurance", "interest_rate",
    "international_fees", "international_visa", "jump_start", "meaning_of_life",
    "measurement_conversion", "mpg", "new_card", "next_holiday", "nutrition_info", "oil_change_how",
    "oil_change_when", "order_checks", "pay_bill", "plug_type", "recipe", "reset_settings",
    "restaurant_reservation", "restaurant_reviews", "rollover_401k", "routing", "smart_home",
    "spelling", "sync_device", "taxes", "timezone", "tire_change", "tire_pressure", "traffic",
    "transfer", "travel_suggestion", "vaccines", "weather", "what_can_i_ask_you", "who_made_you",
}  # fmt: skip


@dataclass(frozen=True)
class Sample:
    text: str
    staff: bool
    source: str  # a brand, "clinc150" or "phrases"


def clinc_samples() -> list[Sample]:
    data = json.loads((CLINC / "data_full.json").read_text())
    by_intent: dict[str, list[str]] = {}
    for text, intent in data["train"]:
        by_intent.setdefault(intent, []).append(text)
    rng = random.Random(7)
    samples = []
    for intent in sorted(OWN_RECORDS | GENERAL_KNOWLEDGE):
        for text in rng.sample(by_intent[intent], PER_INTENT):
            samples.append(Sample(text, intent in OWN_RECORDS, "clinc150"))
    return samples


def phrase_samples() -> list[Sample]:
    staff = [Sample(t, True, "phrases") for group in phrases.STAFF_TOPICS.values() for t in group]
    other = [Sample(t, False, "phrases") for t in [*phrases.HUMAN_REQUEST, *phrases.FRUSTRATION]]
    return staff + other


def brand_samples(folder: Path) -> list[Sample]:
    brand = folder.name
    samples = []
    for line in (folder / "cases.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        case = json.loads(line)
        staff = case.get("expect") == "escalate" and case.get("route") == "staff"
        if staff and len(case["messages"]) > 1:
            continue  # which of its messages is the staff topic is not labelled
        samples.append(Sample(case["messages"][-1], staff, brand))
    knowledge = folder / "knowledge"
    for entry in scan_folder(knowledge):
        if entry.error is not None:
            continue
        document = parse_document(entry.path, read_raw(knowledge, entry.path), ChunkingOptions())
        samples.extend(
            Sample(chunk.embed_text, False, brand)
            for chunk in document.chunks
            if chunk.kind == "question"
        )
    return samples


class Data:
    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples
        texts = [s.text for s in samples]
        vectors = np.asarray(LocalEmbedder("training").embed_documents(texts))
        words = np.asarray([word_features(t) for t in texts])
        self.x = np.hstack([vectors, words])
        self.y = np.asarray([s.staff for s in samples], dtype=int)
        self.source = np.asarray([s.source for s in samples])
        self.brands = sorted({s.source for s in samples} - {"clinc150", "phrases"})

    def fit(self, leave_out: str | None = None) -> StaffTopicModel:
        train = self.source != leave_out
        weight = np.ones(len(self.y))
        for source in set(self.source):
            weight[self.source == source] = 1.0 / np.sum(self.source == source)
        weight = weight / weight[train].mean()
        fitted = LogisticRegression(C=REGULARISATION, max_iter=5000, class_weight="balanced").fit(
            self.x[train], self.y[train], sample_weight=weight[train]
        )
        coef = tuple(float(v) for v in fitted.coef_[0])
        intercept = float(fitted.intercept_[0])
        probabilities = _probabilities(self.x, coef, intercept)
        brand_messages = train & np.isin(self.source, self.brands) & (self.y == 0)
        others = np.sort(probabilities[brand_messages])
        return StaffTopicModel(
            coef=coef,
            intercept=intercept,
            threshold=float(np.quantile(others, 1 - THRESHOLD_SHARE)),
            strong=float(np.quantile(others, 1 - STRONG_SHARE)),
            trained_on=tuple(sorted(set(self.source[train]))),
        )

    def report(self, model: StaffTopicModel, brand: str) -> str:
        mask = self.source == brand
        p = _probabilities(self.x[mask], model.coef, model.intercept)
        y = self.y[mask]
        staff, other = p[y == 1], p[y == 0]
        auc = roc_auc_score(y, p) if 0 < y.sum() < len(y) else float("nan")
        found = np.mean(staff >= model.threshold)
        return (
            f"{brand:10s} AUC {auc:.3f}  staff messages found {found:.0%}"
            f" of {len(staff)} (before answering {np.mean(staff >= model.strong):.0%})"
            f"  others taken for staff {np.mean(other >= model.threshold):.1%}"
            f" (before answering {np.mean(other >= model.strong):.1%}) of {len(other)}"
        )


def _probabilities(x: np.ndarray, coef: tuple[float, ...], intercept: float) -> np.ndarray:
    z = x @ np.asarray(coef) + intercept
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leave-out", action="store_true", help="report each brand left out")
    parser.add_argument("--no-write", action="store_true", help="do not write the model file")
    args = parser.parse_args()
    samples = clinc_samples() + phrase_samples()
    for folder in sorted(p.parent for p in (REPO / "examples").glob("*/cases.jsonl")):
        samples.extend(brand_samples(folder))
    data = Data(samples)
    if args.leave_out:
        print("Each brand left out of training:")
        for brand in data.brands:
            print("  " + data.report(data.fit(leave_out=brand), brand))
    model = data.fit()
    print(f"Shipped model: threshold {model.threshold:.3f}, strong {model.strong:.3f}")
    for brand in data.brands:
        print("  in-sample " + data.report(model, brand))
    if not args.no_write:
        MODEL_FILE.write_text(json.dumps(model.to_dict()) + "\n")
        print(f"Wrote {MODEL_FILE.relative_to(REPO)}")


if __name__ == "__main__":
    main()
