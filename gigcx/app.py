"""The composition root: one brand's running parts (store, events, knowledge, bot,
escalations) built from its settings, for the web server, the CLI and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from gigcx.bot.decision import FrontLineBot
from gigcx.bot.frontline import FrontLine
from gigcx.bot.llm import LLMAnswerer
from gigcx.config import Settings
from gigcx.escalation import Escalations
from gigcx.events import EventBus, InProcessEventBus
from gigcx.knowledge import KnowledgeIndex, open_index
from gigcx.store import ConversationStore, create_engine, upgrade_database


@dataclass
class GigCX:
    """Everything one brand's deployment runs on; `close()` when done."""

    settings: Settings
    store: ConversationStore
    bus: EventBus
    index: KnowledgeIndex
    escalations: Escalations
    front_line: FrontLine

    async def close(self) -> None:
        await self.store.engine.dispose()


async def start(
    settings: Settings, *, index: KnowledgeIndex | None = None, bus: EventBus | None = None
) -> GigCX:
    """Open the store (migrating it), the knowledge index and the bot for `settings`."""
    engine = create_engine(settings.store)
    try:
        await upgrade_database(engine)
    except Exception:
        await engine.dispose()
        raise
    # Only a deployment that tells Slack keeps an outbox for it.
    store = ConversationStore(engine, outbox=settings.slack.enabled)
    bus = bus or InProcessEventBus()
    index = index or open_index(settings)
    escalations = Escalations(settings, store, bus)
    llm = (
        LLMAnswerer(settings.bot.llm, settings.display_name) if settings.bot.mode == "llm" else None
    )
    front_line = FrontLine(settings, store, bus, FrontLineBot(settings, index), escalations, llm)
    return GigCX(settings, store, bus, index, escalations, front_line)
