"""`gigcx eval`: measure the front line on a cases file, against a knowledge folder."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from gigcx.cli.common import ConfigOption, JsonOption, err, fail, index_for, out, settings_from
from gigcx.cli.knowledge import calibrate_brand
from gigcx.config import IndexSettings, Settings, StoreSettings

if TYPE_CHECKING:
    from gigcx.evaluation import EvalCase, EvalReport

FAILURES_SHOWN = 50


def evaluate(
    knowledge: Annotated[
        Path,
        typer.Option("--knowledge", help="Knowledge folder the cases are about.", file_okay=False),
    ],
    cases: Annotated[
        Path, typer.Option("--cases", help="Cases, JSON Lines (see README).", dir_okay=False)
    ],
    config: ConfigOption = None,
    as_json: JsonOption = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain", help="Show each case's top passages, the evidence and the decision."
        ),
    ] = False,
) -> None:
    """Run every case through the bot and print answer accuracy, deflection and the rest.

    The knowledge is synced into a scratch index and conversations go to a scratch store,
    so the brand's own index and conversations are not touched.
    """
    from gigcx.evaluation import CaseFileError, read_cases

    settings = settings_from(config, knowledge)
    try:
        case_list = read_cases(cases, settings.knowledge.path)
    except CaseFileError as error:
        raise fail(str(error)) from None
    with tempfile.TemporaryDirectory(prefix="gigcx-eval-") as scratch:
        scratch_dir = Path(scratch)
        settings = settings.model_copy(
            update={
                "index": IndexSettings(path=scratch_dir / "index"),
                "store": StoreSettings(url=f"sqlite:///{scratch_dir / 'eval.db'}"),
            }
        )
        _sync_scratch_index(settings)
        report = asyncio.run(_run(settings, case_list, show_progress=not as_json))
    if as_json:
        out.print_json(json.dumps(report.to_dict(explain=explain)))
        return
    if explain:
        _print_explained(report)
    _print_report(report)


def _sync_scratch_index(settings: Settings) -> None:
    from gigcx.knowledge import KnowledgeFolderMissing, KnowledgeIndexError, sync_knowledge
    from gigcx.knowledge.documents import ChunkingOptions
    from gigcx.knowledge.embeddings import EmbeddingError

    options = ChunkingOptions(settings.knowledge.chunk_size, settings.knowledge.chunk_overlap)
    index = index_for(settings)
    try:
        report = sync_knowledge(settings.knowledge.path, index, options)
    except (KnowledgeFolderMissing, KnowledgeIndexError, EmbeddingError) as error:
        raise fail(str(error)) from None
    for failure in report.failed:
        err.print(f"[yellow]warning:[/] {escape(str(failure))} (left out of this evaluation)")
    # As `gigcx knowledge sync` does, so the evaluation sees what serving would.
    check = calibrate_brand(settings, index)
    if check is not None:
        err.print(
            f"Answer check on the knowledge's own questions: {check.answered_right} of "
            f"{check.checked} answered from their own topic, {check.answered_wrong} from "
            f"another; {check.note}: {check.threshold:.2f}.",
            highlight=False,
        )


async def _run(settings: Settings, cases: list[EvalCase], *, show_progress: bool) -> EvalReport:
    from gigcx.app import start
    from gigcx.evaluation import run_eval
    from gigcx.store import StoreUnavailable

    try:
        runtime = await start(settings)
    except StoreUnavailable as error:
        raise fail(str(error)) from None
    progress = Progress(
        TextColumn("Running cases"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=not show_progress or not err.is_terminal,
    )
    task = progress.add_task("cases", total=len(cases))
    try:
        with progress:
            return await run_eval(runtime, cases, lambda _result: progress.advance(task))
    finally:
        await runtime.close()


def _print_explained(report: EvalReport) -> None:
    from gigcx.evaluation import explain_case

    for result in report.results:
        case = explain_case(result)
        mark = "[green]pass[/]" if case["passed"] else "[red]FAIL[/]"
        out.print(f"{mark} [bold]{escape(case['id'])}[/]: {escape(case['message'])}")
        out.print(f"     expected {escape(case['expected'])}; got {escape(case['got'])}")
        if case["evidence"]:
            signals = " ".join(f"{k}={v:.2f}" for k, v in case["evidence"].items())
            confidence = (case["decision"] or {}).get("confidence", 0.0)
            out.print(f"     answerability {confidence:.2f} from {escape(signals)}")
        for rank, passage in enumerate(case["passages"], start=1):
            where = passage["path"] + (f" > {passage['section']}" if passage["section"] else "")
            out.print(
                f"     {rank}. {passage['score']:.2f} {escape(where)}"
                f"  [dim](matched: {escape(passage['matched'][:60])})[/]"
            )


def _print_report(report: EvalReport) -> None:
    from gigcx.evaluation import METRICS

    metrics = report.metrics()
    table = Table(title=f"{metrics['cases']} cases", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in METRICS:
        table.add_row(name, f"{metrics[name]:.1%}")
    out.print(table)
    kinds = Table(title="by kind of case", title_justify="left")
    kinds.add_column("kind")
    kinds.add_column("cases", justify="right")
    kinds.add_column("passed", justify="right")
    kinds.add_column("what the bot did")
    for name, row in report.breakdown().items():
        outcomes = ", ".join(f"{label} {count}" for label, count in row["outcomes"].items())
        kinds.add_row(escape(name), str(row["cases"]), str(row["passed"]), escape(outcomes))
    out.print(kinds)
    failures = report.failures()
    if not failures:
        out.print("[green]Every case passed.[/]")
        return
    shown = Table(title=f"{len(failures)} failed", title_justify="left")
    shown.add_column("case")
    shown.add_column("last message")
    shown.add_column("expected")
    shown.add_column("got")
    for result in failures[:FAILURES_SHOWN]:
        shown.add_row(
            escape(result.case.id),
            escape(result.case.messages[-1]),
            escape(result.expected),
            escape(result.got),
        )
    out.print(shown)
    if len(failures) > FAILURES_SHOWN:
        out.print(f"... and {len(failures) - FAILURES_SHOWN} more (--json lists them all)")
