"""`gigcx ask`: chat with the brand's bot in the terminal, with each decision and its sources."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from gigcx.cli.common import ConfigOption, fail, index_for, out, settings_from, warn_empty_index
from gigcx.config import Settings, StoreSettings

if TYPE_CHECKING:
    from gigcx.app import GigCX
    from gigcx.bot.frontline import TurnResult


def ask(
    config: ConfigOption = None,
    message: Annotated[
        list[str] | None,
        typer.Option(
            "--message", "-m", help="Say this instead of prompting (repeat for several turns)."
        ),
    ] = None,
) -> None:
    """Chat with the brand's bot in the terminal, with its decision and sources.

    Conversations go to a throw-away store, not the brand's. /new starts over, /quit ends.
    """
    settings = settings_from(config)
    _warn_if_not_synced(settings)
    with tempfile.TemporaryDirectory(prefix="gigcx-ask-") as scratch:
        scratch_store = StoreSettings(url=f"sqlite:///{Path(scratch) / 'ask.db'}")
        settings = settings.model_copy(update={"store": scratch_store})
        asyncio.run(_chat(settings, message))


async def _chat(settings: Settings, scripted: list[str] | None) -> None:
    from gigcx.app import start
    from gigcx.store import StoreUnavailable

    try:
        runtime = await start(settings)
    except StoreUnavailable as error:
        raise fail(str(error)) from None
    try:
        conversation = await runtime.front_line.start_conversation(customer_id="terminal")
        if scripted is None:
            out.print(
                f"Chatting with the [bold]{escape(settings.display_name)}[/] bot. "
                "/new starts over, /quit ends.\n"
            )
        turns = iter(scripted) if scripted is not None else None
        while True:
            text = next(turns, None) if turns is not None else _prompt()
            if text is None or text.strip() == "/quit":
                return
            if not text.strip():
                continue
            if text.strip() == "/new":
                conversation = await runtime.front_line.start_conversation(customer_id="terminal")
                out.print("[dim]New conversation.[/]")
                continue
            if turns is not None:
                out.print(f"[bold]you>[/] {escape(text)}")
            result = await runtime.front_line.handle_customer_message(conversation.id, text)
            _print_turn(runtime, result)
    finally:
        await runtime.close()


def _prompt() -> str | None:
    try:
        return input("you> ")
    except (EOFError, KeyboardInterrupt):
        out.print()
        return None


def _print_turn(runtime: GigCX, result: TurnResult) -> None:
    from rich.markdown import Markdown

    for reply in result.replies:
        out.print("[bold cyan]bot>[/]")
        if (reply.meta or {}).get("kind") == "handover":
            _print_handover_notice(reply.text)
        elif out.is_terminal:
            out.print(Markdown(reply.text))
        else:
            # Piped: the reply as written (Markdown is plain text), one paragraph a line.
            out.print(reply.text, markup=False, highlight=False)
        for number, source in enumerate(reply.citations, start=1):
            where = source.get("url") or source["path"]
            out.print(f"  [dim][{number}] {escape(str(source['title']))} — {escape(str(where))}[/]")
    decision = result.decision
    if decision is None:
        out.print(
            f"[dim](the conversation is {result.state}: a person has it, the bot stays silent; "
            "/new starts over)[/]"
        )
        return
    if decision.action == "answer":
        line = f"answer · answerability {decision.confidence:.2f}"
    elif decision.action == "clarify":
        line = f"clarify · which of {', '.join(decision.options)}"
    elif decision.action == "escalate":
        tags = f" [{', '.join(decision.tags)}]" if decision.tags else ""
        line = f"escalate · {decision.reason} → {decision.route}{tags}"
    else:
        line = f"small talk · {decision.small_talk}"
    if decision.query and decision.query != result.customer_message.text:
        line += f" · searched: “{decision.query}”"
    out.print(f"[dim]→ {escape(line)}[/]\n")


def _print_handover_notice(text: str) -> None:
    """The handover notice up to who takes over; what it says next ("they'll reply right here
    in this chat... keep this window open") is about the widget, and in this terminal nobody
    takes over, so say that instead."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    handed = next(
        (n for n, sentence in enumerate(sentences) if "passing our conversation" in sentence),
        len(sentences) - 1,
    )
    out.print(" ".join(sentences[: handed + 1]), markup=False, highlight=False)
    out.print(
        "[dim](In the widget the customer now waits for the reply in the same chat. Here in "
        "the terminal nobody takes over: `gigcx ask` reaches no expert and keeps nothing.)[/]"
    )


def _warn_if_not_synced(settings: Settings) -> None:
    from gigcx.knowledge import KnowledgeIndexError

    try:
        count = index_for(settings).count()
    except KnowledgeIndexError as error:
        raise fail(str(error)) from None
    if count == 0:
        warn_empty_index()
