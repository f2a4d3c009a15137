"""`gigcx report` and `gigcx knowledge drafts list|show|edit|accept|reject`: what brand teams
read and decide, from the store the server writes."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from gigcx.cli.common import ConfigOption, JsonOption, fail, out, settings_from
from gigcx.cli.escalation import _with_store
from gigcx.config import Settings

if TYPE_CHECKING:
    from gigcx.store import ConversationStore
    from gigcx.store.models import KnowledgeDraft

drafts_app = typer.Typer(
    help="Knowledge drafts made from gig experts' answers: review, accept, reject.",
    no_args_is_help=True,
)
DraftId = Annotated[str, typer.Argument(help="The draft's id (or the first 6+ characters).")]
ByOption = Annotated[
    str, typer.Option("--by", help="Who decided, kept with the draft (default: cli).")
]


def report(
    month: Annotated[str, typer.Option("--month", help="YYYY-MM (UTC).")],
    config: ConfigOption = None,
    output_format: Annotated[
        Literal["md", "json", "csv"],
        typer.Option("--format", help="md (tables), json (everything) or csv (one row a day)."),
    ] = "md",
) -> None:
    """The month's overview: bot answers, clarifications, escalations by reason and route,
    time to claim, first reply and resolution, satisfaction with the bot and with people."""
    from gigcx.insights.report import Period, as_csv, as_dict, as_markdown, overview

    settings = settings_from(config)
    try:
        period = Period.month(month)
    except ValueError as error:
        raise fail(f"--month: {error}") from None
    result = _with_store(settings, lambda store: overview(store, settings.brand, period))
    if output_format == "json":
        print(json.dumps(as_dict(result), indent=2))
    elif output_format == "csv":
        print(as_csv(result), end="")
    else:
        print(as_markdown(result), end="")


def _resolve_id(drafts: list[KnowledgeDraft], draft_id: str) -> str:
    """A full id from a prefix a person typed (unique among the brand's drafts)."""
    if not re.fullmatch(r"[0-9a-f]{6,32}", draft_id):
        raise fail(f"draft id {draft_id!r}: use the id `gigcx knowledge drafts list` shows")
    ids = [d.id for d in drafts]
    matches = [i for i in ids if i.startswith(draft_id)]
    if not matches:
        raise fail(f"no draft {draft_id!r} (see `gigcx knowledge drafts list`)")
    if len(matches) > 1:
        raise fail(f"draft id {draft_id!r} is ambiguous: type more of it")
    return matches[0]


def _draft_dict(draft: KnowledgeDraft) -> dict[str, object]:
    fields = (
        "id",
        "state",
        "question",
        "alternatives",
        "answer",
        "product",
        "tags",
        "expert",
        "conversation_id",
        "path",
        "decided_by",
    )
    data: dict[str, object] = {name: getattr(draft, name) for name in fields}
    data["created_at"] = draft.created_at.isoformat()
    return data


@drafts_app.command("list")
def drafts_list(
    config: ConfigOption = None,
    state: Annotated[
        str | None, typer.Option("--state", help="pending, accepted or rejected (default: all).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The brand's drafts, pending first (resolutions that have none yet are drafted now)."""
    from gigcx.insights.drafts import Drafter, DraftError, list_drafts

    settings = settings_from(config)

    async def work(store: ConversationStore) -> list[KnowledgeDraft]:
        await Drafter(settings, store, None).catch_up()
        return await list_drafts(store, settings.brand, state)

    try:
        drafts = _with_store(settings, work)
    except DraftError as error:
        raise fail(f"--state: {error}") from None
    if as_json:
        print(json.dumps([_draft_dict(d) for d in drafts], indent=2))
        return
    if not drafts:
        out.print("No drafts yet: they are made when a gig expert resolves a conversation.")
        return
    table = Table("id", "state", "question", "product", "expert", "created")
    for d in drafts:
        table.add_row(
            d.id[:8],
            d.state,
            escape(d.question if len(d.question) < 80 else d.question[:77] + "..."),
            escape(d.product or ""),
            escape(d.expert),
            f"{d.created_at:%Y-%m-%d %H:%M}",
        )
    out.print(table)


def _one(config: ConfigOption, draft_id: str) -> tuple[Settings, str]:
    from gigcx.insights.drafts import list_drafts

    settings = settings_from(config)
    drafts = _with_store(settings, lambda store: list_drafts(store, settings.brand))
    return settings, _resolve_id(drafts, draft_id)


@drafts_app.command("show")
def drafts_show(
    draft_id: DraftId, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """One draft in full: question, alternatives, answer, product, tags, where it came from."""
    from gigcx.insights.drafts import get_draft

    settings, full = _one(config, draft_id)
    draft = _with_store(settings, lambda store: get_draft(store, settings.brand, full))
    if as_json:
        print(json.dumps(_draft_dict(draft), indent=2))
        return
    out.print(f"[bold]Draft {draft.id}[/] ({draft.state})")
    out.print(f"Question: {escape(draft.question)}")
    for alternative in draft.alternatives:
        out.print(f"  also: {escape(alternative)}")
    out.print(f"Product: {escape(draft.product or '-')}   Tags: {escape(', '.join(draft.tags))}")
    out.print(f"From: conversation {draft.conversation_id}, expert {escape(draft.expert)}")
    if draft.path:
        out.print(f"Written to: {escape(str(settings.knowledge.path / draft.path))}")
    out.print("Answer:")
    out.print(escape(draft.answer), highlight=False)


@drafts_app.command("accept")
def drafts_accept(draft_id: DraftId, config: ConfigOption = None, by: ByOption = "cli") -> None:
    """Write the draft as a *.faq.yml entry into the knowledge's drafts/ folder."""
    from gigcx.insights.drafts import DraftError, accept_draft

    settings, full = _one(config, draft_id)
    try:
        draft = _with_store(settings, lambda store: accept_draft(store, settings, full, by=by))
    except DraftError as error:
        raise fail(str(error)) from None
    assert draft.path is not None
    out.print(f"Accepted: wrote {escape(str(settings.knowledge.path / draft.path))}")
    out.print("Review it in your repo, then run `gigcx knowledge sync` to make it answerable.")


@drafts_app.command("reject")
def drafts_reject(draft_id: DraftId, config: ConfigOption = None, by: ByOption = "cli") -> None:
    """Mark the draft rejected (nothing is written)."""
    from gigcx.insights.drafts import DraftError, reject_draft

    settings, full = _one(config, draft_id)
    try:
        _with_store(settings, lambda store: reject_draft(store, settings.brand, full, by=by))
    except DraftError as error:
        raise fail(str(error)) from None
    out.print("Rejected.")
