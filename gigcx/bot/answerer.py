"""The answerer seam: what to say to one customer message, or that a person should take it.

An answerer gets the customer's message and the conversation's history and returns a `Reply`
or an `Escalation`; the front line (`gigcx.bot.frontline`) does everything around it: the
turn lock, storing and publishing messages, the typing indicator, opening the handoff, and
escalating with `bot_error` when an answerer raises. Answerers are found through the
`gigcx.answerers` entry point group (see `gigcx.plugins`); `bot.mode` names the one to use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:  # light to import: `gigcx plugins` and the CLI's checks read it
    from pydantic import BaseModel

    from gigcx.bot.decision import Decision, FrontLineBot, Turn
    from gigcx.config import Settings

T = TypeVar("T")
DraftWriter = Callable[[str], Awaitable[None]]


async def _no_drafts(_text: str) -> None:
    return None


@dataclass(frozen=True)
class CustomerMessage:
    """One customer message to answer, with the conversation's recent history."""

    conversation_id: str
    text: str
    history: Sequence[Turn] = ()
    # Shows the reply being written (the whole text so far) in the widget as a draft; the
    # reply that follows replaces it. Answerers that do not stream never call it.
    draft: DraftWriter = _no_drafts


@dataclass(frozen=True)
class QuickReply:
    """A button under a reply: the widget shows `title`; a customer who clicks it (or types
    it) sends `title`, and the answerer that offered it reads `payload` (its own code, e.g.
    Rasa's `/affirm`; None: the title itself)."""

    title: str
    payload: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {"title": self.title, "payload": self.payload or self.title}


@dataclass(frozen=True)
class Reply:
    """What the bot says. `decision` is stored with the message (`meta["decision"]`) and
    read by `gigcx ask` and `gigcx eval`; None means a plain answer to the message."""

    text: str
    citations: Sequence[Mapping[str, Any]] = ()
    decision: Decision | None = None
    # Stored as meta["quick_replies"] ([{title, payload}]); the widget shows the titles.
    quick_replies: Sequence[QuickReply | str] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Escalation:
    """Hand the conversation to a person: why (`reason`, a short code of at most 32
    characters such as `bot_unavailable`), to whom (`route`: "expert" or "staff"; None for
    the brand's `routing.default_route`) and the handoff's tags (`product:x2`, `topic:x`).
    `decision` is the decision behind it, when the answerer has one (its passages go into
    the expert's packet). `facts` is what the answerer's backend learned that the expert
    should see (Rasa's intent, a form's slots), as label: value; the packet masks them."""

    reason: str
    route: str | None = None
    tags: Sequence[str] = ()
    decision: Decision | None = None
    facts: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, decision: Decision) -> Escalation:
        return cls(decision.reason or "low_confidence", decision.route, decision.tags, decision)


class AnswererUnavailable(Exception):
    """The answerer's backend cannot answer now (a bot server down, a timeout): the front
    line escalates with reason `bot_unavailable` and logs this message, without a traceback."""


@runtime_checkable
class Answerer(Protocol):
    """Decides what to say to a customer message.

    May also define `async def check(self) -> list[str]` (what is wrong, for /readyz; empty
    when ready) and `async def close(self) -> None` (called when the runtime closes).
    """

    async def answer(self, message: CustomerMessage) -> Reply | Escalation: ...


@dataclass(frozen=True)
class AnswererContext:
    """What gigcx gives an answerer plugin when it creates the answerer."""

    settings: Settings
    # The knowledge-grounded decision (decide, search) the built-in answerers use.
    bot: FrontLineBot
    # For CPU work (embedding, search): keeps it off the event loop.
    threads: Executor

    async def in_thread(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.threads, work, *args)


class AnswererPlugin(Protocol):
    """What the `gigcx.answerers` entry point names: a name (the `bot.mode` that picks it),
    a pydantic model of its settings (read from `plugins: {<name>: ...}` in gigcx.yaml; None
    when it has none or reads gigcx's own sections) and a factory."""

    name: str
    settings_model: type[BaseModel] | None
    # Optional: `description` (one line for `gigcx plugins`), and `settings_section` for a
    # built-in that reads a section of gigcx's own settings instead (e.g. "bot.llm").

    def create(self, context: AnswererContext, plugin_settings: Any) -> Answerer: ...
