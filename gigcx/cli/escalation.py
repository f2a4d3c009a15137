"""`gigcx experts sync|list` and `gigcx ledger export`: the expert pool and what it is owed."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from gigcx.cli.common import ConfigOption, JsonOption, fail, out, settings_from
from gigcx.config import Settings

if TYPE_CHECKING:
    from gigcx.store import ConversationStore
    from gigcx.store.models import LedgerEntry

experts_app = typer.Typer(help="The brand's gig experts and staff.", no_args_is_help=True)
ledger_app = typer.Typer(help="The pay-per-resolution ledger.", no_args_is_help=True)
T = TypeVar("T")


def _with_store(settings: Settings, work: Callable[[ConversationStore], Awaitable[T]]) -> T:
    from gigcx.store import ConversationStore, StoreUnavailable, create_engine, upgrade_database

    async def run() -> T:
        engine = create_engine(settings.store)
        try:
            await upgrade_database(engine)
            return await work(ConversationStore(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except StoreUnavailable as error:
        raise fail(str(error)) from None


@experts_app.command("sync")
def experts_sync(
    config: ConfigOption = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Default: escalation.experts_file.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Make the registry match experts.yaml (availability is left as experts set it)."""
    from gigcx.escalation.roster import ExpertsFileError, sync_experts

    settings = settings_from(config)
    path = file or settings.escalation.experts_file
    try:
        report = _with_store(settings, lambda store: sync_experts(store, settings.brand, path))
    except ExpertsFileError as error:
        raise fail(str(error)) from None
    if as_json:
        out.print_json(json.dumps(report))
        return
    for change, who in report.items():
        out.print(f"{change}: {len(who)}" + (f" ({', '.join(who)})" if who else ""))


@experts_app.command("list")
def experts_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Everyone in the registry, with skills, tier, capacity and availability."""
    settings = settings_from(config)
    experts = _with_store(settings, lambda store: store.experts(settings.brand))
    if as_json:
        fields = ("name", "handles", "skills", "languages", "tier", "capacity", "active")
        rows = [
            {"id": e.key, **{f: getattr(e, f) for f in fields}, "available": e.available}
            for e in experts
        ]
        out.print_json(json.dumps(rows))
        return
    table = Table(title=f"{len(experts)} experts", title_justify="left")
    for column in ("id", "name", "handles", "skills", "tier", "capacity", "status"):
        table.add_column(column)
    for e in experts:
        status = "inactive" if not e.active else "available" if e.available else "away"
        handles = ", ".join(f"{channel}: {handle}" for channel, handle in e.handles.items())
        table.add_row(
            escape(e.key),
            escape(e.name),
            escape(handles),
            ", ".join(e.skills),
            e.tier,
            str(e.capacity),
            status,
        )
    out.print(table)


async def _detail(
    store: ConversationStore, brand: str, month: str
) -> tuple[list[LedgerEntry], dict[str, str]]:
    """The month's paid resolutions, and each expert's name by gigcx id."""
    from gigcx.escalation.ledger import ledger_for_month

    entries = await ledger_for_month(store, brand, month)
    return entries, {e.key: e.name for e in await store.experts(brand)}


@ledger_app.command("export")
def ledger_export(
    month: Annotated[str, typer.Option("--month", help="YYYY-MM (UTC).")],
    config: ConfigOption = None,
    output_format: Annotated[
        Literal["csv", "json"], typer.Option("--format", help="csv or json.")
    ] = "csv",
    detail: Annotated[
        bool, typer.Option("--detail", help="One line per resolution instead of per expert.")
    ] = False,
) -> None:
    """What each expert is owed for a month (or, with --detail, every paid resolution)."""
    from gigcx.escalation.ledger import BadMonth, statements

    settings = settings_from(config)
    brand = settings.brand
    try:
        if detail:
            entries, names = _with_store(settings, lambda store: _detail(store, brand, month))
            rows = [
                {
                    "expert": e.expert,
                    "name": names.get(e.expert, e.expert),
                    "conversation_id": e.conversation_id,
                    "claimed_at": e.claimed_at.isoformat(),
                    "resolved_at": e.resolved_at.isoformat(),
                    "handle_seconds": e.handle_seconds,
                    "csat": e.csat,
                    "payout": str(e.payout),
                    "currency": e.currency,
                }
                for e in entries
            ]
        else:
            lines = _with_store(settings, lambda store: statements(store, brand, month))
            rows = [
                {k: str(v) if k == "payout" else v for k, v in dataclasses.asdict(s).items()}
                for s in lines
            ]
    except BadMonth as error:
        raise fail(str(error)) from None
    if output_format == "json":
        out.print_json(json.dumps(rows))
        return
    buffer = io.StringIO()
    columns = list(rows[0]) if rows else ["expert", "resolutions", "payout", "currency"]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    print(buffer.getvalue(), end="")
