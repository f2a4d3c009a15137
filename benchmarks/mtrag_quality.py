"""Answer, clarify or escalate on MTRAG-UN (IBM, Apache-2.0): real document-grounded
multi-turn questions, labelled ANSWERABLE, PARTIAL, UNANSWERABLE and UNDERSPECIFIED.

For each collection (govt, clapnq, fiqa in ../shared/data/mtrag-un), a knowledge base is made
of the union of its tasks' reference passages (one Markdown file per passage) and synced with
the real sync code. Every task then runs through `gigcx eval`'s code path with its earlier turns
(customer and agent) as `context` and its last question judged. Nothing here was used to train
or tune anything. Reported, per collection and overall:

- ANSWERABLE answered from a right passage (one of the task's reference passages);
- UNANSWERABLE escalated (goal >= 90% while >= 60% of ANSWERABLE are answered right);
- UNDERSPECIFIED clarified, and PARTIAL answered from a right passage (for information).

Run: .venv/bin/python benchmarks/mtrag_quality.py [--collections govt,clapnq,fiqa]
Writes benchmarks/out/mtrag_quality.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gigcx.app import start
from gigcx.config import IndexSettings, KnowledgeSettings, RoutingSettings, Settings, StoreSettings
from gigcx.evaluation import CaseResult, ContextTurn, EvalCase, run_eval
from gigcx.knowledge import open_index, sync_knowledge

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "mtrag-un" / "reference.jsonl"
OUT = REPO / "benchmarks" / "out"
EXPECT = {
    "ANSWERABLE": "answer",
    "PARTIAL": "answer",
    "UNANSWERABLE": "escalate",
    "UNDERSPECIFIED": "clarify",
}

console = Console()


def file_name(document_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", document_id) + ".md"


def write_knowledge(folder: Path, tasks: list[dict]) -> None:
    """One Markdown file per reference passage of the collection."""
    folder.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        for context in task["contexts"]:
            text = " ".join(str(context["text"]).split())
            title = context.get("title") or " ".join(text.split()[:8])
            body = f"---\ntitle: {json.dumps(title)}\n---\n{text}\n"
            (folder / file_name(context["document_id"])).write_text(body)


def case_for(task: dict) -> EvalCase:
    turns = task["input"]
    label = task["answerability"][0]
    context = [
        ContextTurn(author="customer" if t["speaker"] == "user" else "agent", text=t["text"])
        for t in turns[:-1]
        if t["text"].strip()
    ]
    sources = sorted({file_name(c["document_id"]) for c in task["contexts"]})
    expect = EXPECT[label] if label != "ANSWERABLE" or sources else "escalate"
    return EvalCase(
        id=task["task_id"],
        messages=[turns[-1]["text"]],
        expect=expect,  # type: ignore[arg-type]
        sources=sources if expect == "answer" else [],
        context=context,
        kind=label,
    )


async def run_collection(name: str, tasks: list[dict], scratch: Path) -> list[CaseResult]:
    knowledge = scratch / "knowledge"
    write_knowledge(knowledge, tasks)
    settings = Settings(
        brand=f"mtrag-{name}",
        knowledge=KnowledgeSettings(path=knowledge),
        index=IndexSettings(path=scratch / "index"),
        store=StoreSettings(url=f"sqlite:///{scratch / 'eval.db'}"),
        # No brand-specific staff topics: these are information questions.
        routing=RoutingSettings(staff_topics={}),
    )
    started = time.perf_counter()
    report = sync_knowledge(knowledge, open_index(settings))
    console.print(
        f"{name}: {report.chunks_embedded} chunks from {len(report.added)} passages "
        f"({time.perf_counter() - started:.0f} s)"
    )
    runtime = await start(settings)
    try:
        results = (await run_eval(runtime, [case_for(task) for task in tasks])).results
    finally:
        await runtime.close()
    return results


def rates(results: list[CaseResult]) -> dict[str, dict[str, float | int]]:
    by_label: dict[str, list[CaseResult]] = defaultdict(list)
    for result in results:
        by_label[str(result.case.kind)].append(result)
    figures: dict[str, dict[str, float | int]] = {}
    for label, group in by_label.items():
        if label in ("ANSWERABLE", "PARTIAL"):
            good = sum(r.right_source for r in group)
        elif label == "UNANSWERABLE":
            good = sum(r.action == "escalate" for r in group)
        else:
            good = sum(r.action == "clarify" for r in group)
        figures[label] = {
            "tasks": len(group),
            "good": good,
            "rate": round(good / len(group), 4),
            "answered": sum(r.answered for r in group),
        }
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collections", default="govt,clapnq,fiqa")
    args = parser.parse_args()
    tasks = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    wanted = args.collections.split(",")
    results: dict[str, list[CaseResult]] = {}
    with tempfile.TemporaryDirectory(prefix="gigcx-mtrag-") as scratch:
        for name in wanted:
            chosen = [t for t in tasks if t["Collection"] == name]
            results[name] = await run_collection(name, chosen, Path(scratch) / name)
    report = {name: rates(group) for name, group in results.items()}
    report["all"] = rates([r for group in results.values() for r in group])
    table = Table(title="MTRAG-UN: answer, clarify or escalate (quote mode)", title_justify="left")
    table.add_column("collection")
    table.add_column("ANSWERABLE answered right", justify="right")
    table.add_column("UNANSWERABLE escalated", justify="right")
    table.add_column("UNDERSPECIFIED clarified", justify="right")
    table.add_column("PARTIAL answered right", justify="right")
    for name, figures in report.items():
        cells = []
        for label in ("ANSWERABLE", "UNANSWERABLE", "UNDERSPECIFIED", "PARTIAL"):
            row = figures.get(label)
            cells.append(f"{row['rate']:.1%} ({row['good']}/{row['tasks']})" if row else "-")
        table.add_row(name, *cells)
    console.print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "mtrag_quality.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
