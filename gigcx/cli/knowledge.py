"""`gigcx knowledge sync|search|import`: the brand team's commands over `gigcx.knowledge`."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.padding import Padding
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from gigcx.cli.common import (
    EXIT_INPUT_PROBLEMS,
    ConfigOption,
    JsonOption,
    err,
    fail,
    index_for,
    out,
    settings_from,
)
from gigcx.cli.insights import drafts_app
from gigcx.config import Settings

if TYPE_CHECKING:
    from gigcx.bot.calibration import Calibration
    from gigcx.knowledge import ChunkingOptions, KnowledgeIndex, SearchHit, SyncReport
    from gigcx.knowledge.rasa_import import ImportPlan, Skipped, WriteResult

knowledge_app = typer.Typer(help="Sync and search a brand's knowledge files.", no_args_is_help=True)
import_app = typer.Typer(
    help="Turn another tool's project into knowledge files.", no_args_is_help=True
)
knowledge_app.add_typer(import_app, name="import")
knowledge_app.add_typer(drafts_app, name="drafts")
# Files listed per kind of change in the terminal; --json lists them all. Failures: always all.
LIST_AT_MOST = 25

# ---------------------------------------------------------------- knowledge sync


@knowledge_app.command("sync")
def knowledge_sync(
    folder: Annotated[
        Path | None,
        typer.Argument(help="Knowledge folder (default: knowledge.path from the config)."),
    ] = None,
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would change; change nothing.")
    ] = False,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Drop the index and embed everything again.")
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep running; re-sync on every change.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Bring the index in line with the knowledge files: only changed files are embedded."""
    from gigcx.knowledge import ChunkingOptions

    settings = settings_from(config, folder)
    index = index_for(settings)
    options = ChunkingOptions(settings.knowledge.chunk_size, settings.knowledge.chunk_overlap)
    report = _run_sync(settings, index, options, dry_run=dry_run, rebuild=rebuild, as_json=as_json)
    if watch and not dry_run:
        from gigcx.knowledge.watch import watch_knowledge

        err.print(f"Watching {settings.knowledge.path} for changes (Ctrl-C to stop)...")
        with contextlib.suppress(KeyboardInterrupt):
            watch_knowledge(
                settings.knowledge.path,
                index,
                options,
                lambda r: _print_report(r, as_json) if r.has_changes or r.failed else None,
            )
        return
    if not report.ok:
        raise typer.Exit(EXIT_INPUT_PROBLEMS)


def _run_sync(
    settings: Settings,
    index: KnowledgeIndex,
    options: ChunkingOptions,
    *,
    dry_run: bool,
    rebuild: bool,
    as_json: bool,
) -> SyncReport:
    from gigcx.knowledge import KnowledgeFolderMissing, KnowledgeIndexError, sync_knowledge
    from gigcx.knowledge.embeddings import EmbeddingError

    progress = Progress(
        TextColumn("Embedding chunks"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=as_json or not err.is_terminal,
    )
    task = progress.add_task("embed", total=None)

    def on_progress(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    try:
        with progress:
            report = sync_knowledge(
                settings.knowledge.path,
                index,
                options,
                dry_run=dry_run,
                rebuild=rebuild,
                on_progress=on_progress,
            )
    except (KnowledgeFolderMissing, KnowledgeIndexError, EmbeddingError) as error:
        raise fail(str(error)) from None
    check = None
    # Nothing added, changed or removed: the check kept with the index still holds, and
    # running it again would load the embedding model to ask the same questions.
    if not dry_run and report.has_changes:
        check = calibrate_brand(settings, index)
    _print_report(report, as_json, check)
    return report


def calibrate_brand(settings: Settings, index: KnowledgeIndex) -> Calibration | None:
    """Check the answer decision on the brand's own wordings (see gigcx.bot.calibration)."""
    from gigcx.bot.answerability import AnswerabilityModelError, load_model
    from gigcx.bot.calibration import calibrate
    from gigcx.bot.decision import FrontLineBot
    from gigcx.knowledge import KnowledgeIndexError
    from gigcx.knowledge.embeddings import EmbeddingError

    try:
        bot = FrontLineBot(settings, index, load_model())
        return calibrate(bot)
    except (AnswerabilityModelError, KnowledgeIndexError, EmbeddingError) as error:
        err.print(f"[yellow]warning:[/] the answer decision was not checked: {escape(str(error))}")
        return None


def _print_report(report: SyncReport, as_json: bool, check: Calibration | None = None) -> None:
    if as_json:
        data = report.to_dict()
        data["calibration"] = check.to_dict() if check else None
        print(json.dumps(data, ensure_ascii=False))
        return
    verb = "Would sync" if report.dry_run else "Synced"
    rebuilt = " (index rebuilt)" if report.rebuilt else ""
    out.print(f"{verb} [bold]{report.folder}[/]{rebuilt}", highlight=False)
    table = Table(show_header=True, header_style="bold")
    for name in ("added", "changed", "removed", "unchanged", "failed"):
        table.add_column(name, justify="right")
    table.add_row(
        str(len(report.added)),
        str(len(report.changed)),
        str(len(report.removed)),
        str(len(report.unchanged)),
        f"[red]{len(report.failed)}[/]" if report.failed else "0",
    )
    out.print(table)
    for label, paths, colour in (
        ("added", report.added, "green"),
        ("changed", report.changed, "yellow"),
        ("removed", report.removed, "magenta"),
    ):
        for path in paths[:LIST_AT_MOST]:
            out.print(f"  [{colour}]{label:>8}[/] {path}", highlight=False)
        if len(paths) > LIST_AT_MOST:
            out.print(f"  {'':>8} ... and {len(paths) - LIST_AT_MOST} more {label} (see --json)")
    for error in report.failed:
        out.print(f"  [red]{'failed':>8}[/] {error}", highlight=False)
    if report.failed and not report.dry_run:
        out.print(
            "[red]Some files were not synced;[/] their last good version (if any) is still "
            "searchable. Fix them and sync again.",
            highlight=False,
        )
    embedded = "would embed" if report.dry_run else "embedded"
    total = "" if report.dry_run else f", {report.chunks_total} in the index"
    out.print(f"{report.chunks_embedded} chunks {embedded}{total}, {report.seconds:.2f} s")
    if check is not None:
        out.print(
            f"Answer check: {check.checked} of the knowledge's own questions asked with each "
            f"left out: {check.answered_right} answered from their own topic, "
            f"{check.answered_wrong} from another, {check.escalated} escalated; {check.note}: "
            f"{check.threshold:.2f}.",
            highlight=False,
        )


# ---------------------------------------------------------------- knowledge search


@knowledge_app.command("search")
def knowledge_search(
    query: Annotated[
        str | None, typer.Argument(help="The question. Leave out for an interactive prompt.")
    ] = None,
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option("--limit", "-k", min=1, max=50, help="How many hits.")] = 5,
    internal: Annotated[
        bool, typer.Option("--internal", help="Include internal passages (what experts see).")
    ] = False,
    product: Annotated[str | None, typer.Option("--product", help="Only this product.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Search the knowledge index the way the bot does: best passages, with their source."""
    from gigcx.knowledge import KnowledgeIndexError
    from gigcx.knowledge.embeddings import EmbeddingError

    settings = settings_from(config)
    index = index_for(settings)

    def run(text: str) -> list[SearchHit]:
        try:
            return index.search(text, limit, include_internal=internal, product=product)
        except (KnowledgeIndexError, EmbeddingError) as error:
            raise fail(str(error)) from None

    if query is not None:
        if not as_json:
            with err.status("Loading the embedding model..."):
                hits = run(query)
        else:
            hits = run(query)
        _print_hits(query, hits, as_json)
        return

    with err.status("Loading the embedding model..."):
        run("warm up")
    out.print(
        f"Searching the knowledge of [bold]{settings.display_name}[/] "
        f"({index.count()} chunks). Ask a question; an empty line or Ctrl-D quits.",
        highlight=False,
    )
    while True:
        try:
            text = input("? ").strip()
        except (EOFError, KeyboardInterrupt):
            out.print()
            return
        if not text:
            return
        _print_hits(text, run(text), as_json)


def _print_hits(query: str, hits: list[SearchHit], as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {"query": query, "hits": [hit.to_dict() for hit in hits]}, ensure_ascii=False
            )
        )
        return
    if not hits:
        out.print("[dim]No matching knowledge.[/]")
        return
    for rank, hit in enumerate(hits, start=1):
        heading = hit.title
        if hit.section and hit.section != hit.title:
            heading += f" > {hit.section}"
        marker = "  [red]internal[/]" if hit.audience == "internal" else ""
        out.print(
            f"[bold]{rank}.[/] [cyan]{hit.score:.2f}[/]  [bold]{escape(heading)}[/]{marker}",
            highlight=False,
        )
        out.print(f"   [dim]{escape(hit.path)}[/]", highlight=False, soft_wrap=True)
        out.print(Padding(Text(hit.snippet), (0, 0, 0, 3)))
    out.print()


# ---------------------------------------------------------------- knowledge import rasa

# What was not imported, grouped by the kind of thing (the first word of Skipped.what).
# In the order they are printed.
SKIPPED_GROUPS = {
    "intent": "Intents without a one-step answer",
    "response": "Responses not imported, or imported in part",
    "rule": "Rules and stories",
    "story": "Rules and stories",
    "form": "Forms",
    "custom": "Custom actions",
    "slot": "Slots",
    "lookup": "Lookup tables and regexes",
    "regex": "Lookup tables and regexes",
}
SKIPPED_PER_GROUP = 10


IMPORT_RASA_HELP = (
    "Import a Rasa 3 project's FAQ-like intents and answers as FAQ files, one per group.\n\n"
    "Retrieval intents (faq/ask_x with utter_faq/ask_x) and intents that a one-step rule or "
    "story answers with a text response become entries; forms, slots, custom actions and the "
    "rest are listed as not imported, with file and line. Run it again after changing the "
    "project: the files it wrote are updated in place."
)


@import_app.command("rasa", help=IMPORT_RASA_HELP)
def import_rasa(
    project: Annotated[
        Path, typer.Argument(help="The Rasa 3 project folder (with domain.yml and data/).")
    ],
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder for the *.faq.yml files (default: ./knowledge/rasa in the current "
            "directory). Files the import did not write there are never touched.",
        ),
    ] = Path("knowledge/rasa"),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be written; write nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    from gigcx.knowledge.rasa_import import (
        RasaImportError,
        plan_import,
        preview_write,
        write_plan,
    )

    try:
        plan = plan_import(project)
        result = preview_write(plan, out_dir) if dry_run else write_plan(plan, out_dir)
    except RasaImportError as error:
        raise fail(escape(str(error))) from None
    except OSError as error:
        raise fail(
            escape(f"{error.filename or out_dir}: cannot write ({error.strerror})")
        ) from None
    if as_json:
        data = {"dry_run": dry_run, **plan.to_dict(), **result.to_dict()}
        print(json.dumps(data, ensure_ascii=False))
        return
    _print_import(plan, result, dry_run)


def _print_import(plan: ImportPlan, result: WriteResult, dry_run: bool) -> None:
    files = len(plan.files)
    verb = "Would import" if dry_run else "Imported"
    out.print(
        f"{verb} [bold]{plan.entry_count}[/] FAQ entries in {files} file{'s' * (files != 1)} "
        f"to [bold]{escape(str(result.out))}[/] "
        f"(from the Rasa project {escape(str(plan.project))})",
        highlight=False,
    )
    for name, entries in plan.files.items():
        if name in result.unchanged:
            state = "unchanged"
        elif name in result.created:
            state = "new"
        else:
            state = "updated"
        out.print(f"  {escape(name)}: {len(entries)} entries, {state}", highlight=False)
        if dry_run:
            for entry in entries[:LIST_AT_MOST]:
                out.print(f"    - {escape(entry.question)}", highlight=False)
            if len(entries) > LIST_AT_MOST:
                out.print(f"    ... and {len(entries) - LIST_AT_MOST} more (see --json)")
    for name in result.removed:
        removal = "would be removed" if dry_run else "removed"
        out.print(
            f"  {escape(name)}: {removal} (the project no longer produces it)", highlight=False
        )
    if not plan.files:
        out.print(
            "[yellow]No intent in the project could become an FAQ entry[/]; the list below "
            "says why for each.",
            highlight=False,
        )
    if plan.skipped:
        _print_skipped(plan.skipped)
    if not dry_run and plan.files:
        out.print(
            "Next: `gigcx knowledge sync` indexes them when this folder is inside your "
            "knowledge folder (knowledge.path in gigcx.yaml).",
            highlight=False,
        )


def _print_skipped(skipped: list[Skipped]) -> None:
    titles = list(dict.fromkeys(SKIPPED_GROUPS.values()))
    groups: dict[str, list[Skipped]] = {title: [] for title in [*titles, "Other"]}
    for item in sorted(skipped, key=lambda s: (s.file, s.line or 0)):
        groups[SKIPPED_GROUPS.get(item.what.split(" ", 1)[0], "Other")].append(item)
    out.print(
        f"[yellow]{len(skipped)} things not imported[/] (gigcx answers from text; what needs "
        "conversation state or code is left to the experts):",
        highlight=False,
    )
    for title, items in groups.items():
        if not items:
            continue
        reasons = {item.why for item in items}
        shared = f": {reasons.pop()}" if len(reasons) == 1 else ""
        out.print(f"  [bold]{title}[/] ({len(items)}){escape(shared)}", highlight=False)
        for item in items[:SKIPPED_PER_GROUP]:
            why = "" if shared else f": {item.why}"
            out.print(f"    {escape(item.where)}  {escape(item.what + why)}", highlight=False)
        if len(items) > SKIPPED_PER_GROUP:
            out.print(f"    ... and {len(items) - SKIPPED_PER_GROUP} more (see --json)")
