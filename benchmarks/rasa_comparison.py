"""The Rasa row of our comparison: gigcx quote mode on a Rasa project's imported knowledge
against Rasa's own NLU trained on the same project, on the project's own NLU test set.

The project is RasaHQ's rasa-demo ("Sara", GPL-3.0), read by path from
../shared/data/rasa/rasa-demo and never copied into this repository; its tests/test_nlu.yml
(644 examples, 74 intents) is the test set. Nothing here was tuned on it.

- gigcx: `gigcx knowledge import rasa` of the project into a temporary folder, synced with the
  real sync code, then every test example asked as a first message (quote mode, defaults). An
  answer counts as right when the quoted entry is the example's intent (the entry's tag).
  Intents the import leaves out (forms, custom actions, handoff, out of scope ...) cannot be
  answered from knowledge: for them, escalating is right and answering is wrong.
- Rasa: `rasa train nlu` with the project's own config.yml (less Duckling, which needs a server;
  `--epochs N` shortens DIET and the ResponseSelectors for a quicker run), then
  `rasa test nlu` (its own intent report) and every example parsed through `/model/parse` of
  `rasa run --enable-api` for the full intent (a retrieval intent's sub-intent from the
  ResponseSelector) and for the fallback (`nlu_fallback`, below FallbackClassifier's 0.7).

Run (needs `make rasa-venv`):
    .venv/bin/python benchmarks/rasa_comparison.py [--epochs 30] [--rasa-model PATH]
Writes benchmarks/out/rasa_comparison.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gigcx.app import start  # noqa: E402
from gigcx.config import IndexSettings, KnowledgeSettings, Settings, StoreSettings  # noqa: E402
from gigcx.knowledge import open_index, sync_knowledge  # noqa: E402
from gigcx.knowledge.rasa_import import ImportPlan, plan_import, write_plan  # noqa: E402
from tests.helpers.processes import free_port  # noqa: E402
from tests.helpers.rasa import DEFAULT_VENV, RASA_ENV  # noqa: E402

PROJECT = REPO.parent / "shared" / "data" / "rasa" / "rasa-demo"
OUT = REPO / "benchmarks" / "out"
console = Console()


@dataclass(frozen=True)
class Example:
    text: str
    intent: str  # the full intent: `faq/languages`, `greet`


@dataclass(frozen=True)
class Prediction:
    intent: str | None  # None: handed over (gigcx escalated, Rasa fell back)


def test_examples(project: Path) -> list[Example]:
    data = yaml.safe_load((project / "tests" / "test_nlu.yml").read_text())
    examples = []
    for block in data["nlu"]:
        if "intent" not in block:
            continue
        for line in str(block["examples"]).splitlines():
            text = line.strip().removeprefix("- ").strip()
            if text:
                examples.append(Example(_plain(text), str(block["intent"])))
    return examples


def _plain(text: str) -> str:
    """Entity markup to its text: `[Berlin](city)` and `[x]{"entity": ...}` become the text."""
    import re

    return re.sub(r"\[([^\]]+)\](\([^)]*\)|\{[^}]*\})", r"\1", text)


# ------------------------------------------------------------------ gigcx


async def gigcx_predictions(
    plan: ImportPlan, examples: list[Example], scratch: Path
) -> tuple[list[Prediction], dict[str, float]]:
    knowledge = scratch / "knowledge"
    write_plan(plan, knowledge)
    intent_of = {
        entry.question.strip(): entry.intent for entries in plan.files.values() for entry in entries
    }
    settings = Settings(
        brand="rasa-demo",
        knowledge=KnowledgeSettings(path=knowledge),
        index=IndexSettings(path=scratch / "index"),
        store=StoreSettings(url=f"sqlite:///{scratch / 'gigcx.db'}"),
    )
    started = time.perf_counter()
    report = sync_knowledge(knowledge, open_index(settings))
    sync_seconds = time.perf_counter() - started
    runtime = await start(settings)
    predictions = []
    small_talk = {"greeting": "greet", "thanks": "thank"}
    started = time.perf_counter()
    try:
        for example in examples:
            decision = await asyncio.to_thread(runtime.front_line.bot.decide, example.text, [])
            if decision.action == "small_talk":
                predictions.append(Prediction(small_talk.get(decision.small_talk or "")))
            elif decision.action != "answer" or decision.best is None:
                predictions.append(Prediction(None))
            else:
                predictions.append(Prediction(intent_of.get(decision.best.title.strip())))
    finally:
        await runtime.close()
    return predictions, {
        "chunks": report.chunks_embedded,
        "sync_seconds": round(sync_seconds, 1),
        "ms_per_message": round(1000 * (time.perf_counter() - started) / len(examples), 1),
    }


# ------------------------------------------------------------------ Rasa


def rasa_bin(venv: Path) -> str:
    rasa = venv / "bin" / "rasa"
    if not rasa.exists():
        raise SystemExit(f"Rasa is not installed in {venv}: run `make rasa-venv`")
    return str(rasa)


def rasa_project(scratch: Path, epochs: int | None) -> Path:
    """A copy of the project (in the scratch folder, never in the repository) with its own
    config less Duckling, and fewer epochs if asked."""
    project = Path(shutil.copytree(PROJECT, scratch / "rasa-demo"))
    config = yaml.safe_load((project / "config.yml").read_text())
    pipeline = [p for p in config["pipeline"] if p["name"] != "DucklingEntityExtractor"]
    if epochs:
        for component in pipeline:
            if component["name"] in ("DIETClassifier", "ResponseSelector"):
                component["epochs"] = epochs
    config["pipeline"] = pipeline
    (project / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return project


def run_rasa(rasa: str, args: list[str], project: Path, log: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run(
            [rasa, *args],
            cwd=project,
            env={**os.environ, **RASA_ENV},
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"rasa {args[0]} failed; see {log}")


def rasa_predictions(
    rasa: str, project: Path, model: Path, examples: list[Example], log: Path
) -> tuple[list[Prediction], dict[str, Any]]:
    run_rasa(
        rasa,
        ["test", "nlu", "--nlu", "tests/test_nlu.yml", "--model", str(model), "--out", "results"],
        project,
        log,
    )
    report = json.loads((project / "results" / "intent_report.json").read_text())
    own = {"intent_accuracy": round(float(report["accuracy"]), 4)}

    port = free_port()
    with log.open("ab") as out:
        server = subprocess.Popen(
            [rasa, "run", "--enable-api", "-i", "127.0.0.1", "-p", str(port), "-m", str(model)],
            cwd=project,
            env={**os.environ, **RASA_ENV},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"{url}/status", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"rasa run did not start; see {log}") from None
                time.sleep(1)
        predictions = []
        started = time.perf_counter()
        for example in examples:
            request = urllib.request.Request(
                f"{url}/model/parse",
                data=json.dumps({"text": example.text}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                parsed = json.load(answer)
            predictions.append(Prediction(_full_intent(parsed)))
        own["ms_per_message"] = round(1000 * (time.perf_counter() - started) / len(examples), 1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return predictions, own


def _full_intent(parsed: dict[str, Any]) -> str | None:
    intent = str((parsed.get("intent") or {}).get("name") or "")
    if intent in ("", "nlu_fallback"):
        return None
    selector = (parsed.get("response_selector") or {}).get(intent)
    if selector:
        key = (selector.get("response") or {}).get("intent_response_key")
        if key:
            return str(key)
    return intent


# ------------------------------------------------------------------ figures


def figures(
    examples: list[Example], predictions: list[Prediction], answerable: set[str]
) -> dict[str, Any]:
    """Accuracy over all examples, and what happened to the ones gigcx's knowledge can answer
    (their intent was imported) and to the rest (handing over is right)."""
    pairs = list(zip(examples, predictions, strict=True))
    inside = [(e, p) for e, p in pairs if e.intent in answerable]
    outside = [(e, p) for e, p in pairs if e.intent not in answerable]

    def right(group: list[tuple[Example, Prediction]]) -> float:
        return _share(sum(p.intent == e.intent for e, p in group), len(group))

    def wrong(group: list[tuple[Example, Prediction]]) -> float:
        return _share(sum(p.intent not in (None, e.intent) for e, p in group), len(group))

    def handed_over(group: list[tuple[Example, Prediction]]) -> float:
        return _share(sum(p.intent is None for _, p in group), len(group))

    return {
        "examples": len(pairs),
        "intent_accuracy": right(pairs),
        "importable": {
            "examples": len(inside),
            "answered_right": right(inside),
            "answered_wrong": wrong(inside),
            "handed_over": handed_over(inside),
        },
        "not_importable": {
            "examples": len(outside),
            "intent_right": right(outside),
            "handed_over": handed_over(outside),
        },
        "handed_over": handed_over(pairs),
        "wrong": wrong(pairs),
    }


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="DIET/ResponseSelector epochs")
    parser.add_argument("--rasa-model", type=Path, help="a model `rasa train nlu` already made")
    parser.add_argument("--rasa-venv", type=Path, default=None)
    parser.add_argument("--gigcx-only", action="store_true", help="skip Rasa")
    args = parser.parse_args()
    venv = args.rasa_venv or Path(os.environ.get("GIGCX_RASA_VENV") or DEFAULT_VENV)

    examples = test_examples(PROJECT)
    plan = plan_import(PROJECT)
    answerable = {entry.intent for entries in plan.files.values() for entry in entries}
    console.print(
        f"rasa-demo: {len(examples)} test examples of {len({e.intent for e in examples})} "
        f"intents; the import made {len(answerable)} entries"
    )
    results: dict[str, Any] = {"project": "rasa-demo", "answerable_intents": len(answerable)}
    with tempfile.TemporaryDirectory(prefix="gigcx-rasa-bench-") as scratch_name:
        scratch = Path(scratch_name)
        predictions, timing = asyncio.run(gigcx_predictions(plan, examples, scratch / "gigcx"))
        results["gigcx"] = {**figures(examples, predictions, answerable), **timing}
        misses = Counter(
            (e.intent, p.intent)
            for e, p in zip(examples, predictions, strict=True)
            if e.intent in answerable and p.intent not in (None, e.intent)
        )
        results["gigcx"]["most_confused"] = [
            f"{a} -> {b}: {n}" for (a, b), n in misses.most_common(8)
        ]
        if not args.gigcx_only:
            rasa = rasa_bin(venv)
            log = scratch / "rasa.log"
            project = rasa_project(scratch, args.epochs)
            model = args.rasa_model
            if model is None:
                started = time.perf_counter()
                run_rasa(rasa, ["train", "nlu", "--out", "models", "--fixed-model-name", "nlu"],
                         project, log)  # fmt: skip
                results["rasa_train_seconds"] = round(time.perf_counter() - started)
                model = project / "models" / "nlu.tar.gz"
            rasa_said, own = rasa_predictions(rasa, project, model.resolve(), examples, log)
            results["rasa"] = {**figures(examples, rasa_said, answerable), "rasa_test_nlu": own}
            results["rasa_epochs"] = args.epochs or "the project's own"
    OUT.mkdir(exist_ok=True)
    (OUT / "rasa_comparison.json").write_text(json.dumps(results, indent=2))
    table = Table(title="rasa-demo tests/test_nlu.yml: full intent (retrieval sub-intents too)")
    for column in ("", "intent accuracy", "importable: right", "wrong", "handed over",
                   "not importable: handed over", "all: wrong"):  # fmt: skip
        table.add_column(column)
    for name in ("gigcx", "rasa"):
        if name in results:
            row = results[name]
            table.add_row(
                name,
                f"{row['intent_accuracy']:.1%}",
                f"{row['importable']['answered_right']:.1%}",
                f"{row['importable']['answered_wrong']:.1%}",
                f"{row['importable']['handed_over']:.1%}",
                f"{row['not_importable']['handed_over']:.1%}",
                f"{row['wrong']:.1%}",
            )
    console.print(table)
    console.print_json(json.dumps(results))


if __name__ == "__main__":
    main()
