"""The composition root: one brand's running parts (store, events, knowledge, the
answerer and front line, escalations, the enabled channels' plugins) built from its
settings, for the web server, the CLI and the tests.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import redis.asyncio as redis

from gigcx import plugins
from gigcx.bot.answerability import AnswerabilityModel
from gigcx.bot.answerer import AnswererContext
from gigcx.bot.decision import FrontLineBot
from gigcx.bot.frontline import FrontLine, knowledge_thread_pool
from gigcx.config import Settings
from gigcx.escalation import Escalations
from gigcx.events import EventBus, InProcessEventBus
from gigcx.events.redis_bus import RedisEventBus
from gigcx.insights.drafts import Drafter
from gigcx.knowledge import KnowledgeIndex, open_index
from gigcx.store import ConversationStore, create_engine, upgrade_database

log = logging.getLogger(__name__)
WARM_UP_SECONDS = 60.0
# Loading the knowledge before the first question waits this long at most: a knowledge
# index that hangs (a Chroma server that accepts and never answers) must not keep the server
# from listening. The load goes on in its thread; the first question waits for the rest.
KNOWLEDGE_WARM_UP_SECONDS = 20.0


@dataclass
class GigCX:
    """Everything one brand's deployment runs on; `close()` when done."""

    settings: Settings
    store: ConversationStore
    bus: EventBus
    index: KnowledgeIndex
    escalations: Escalations
    front_line: FrontLine
    # Shared by the server processes of a scaled-out deployment (`redis.url`); None in one.
    redis: redis.Redis | None = field(default=None)
    # The channels the settings turn on; a server creates, mounts and starts them.
    channels: list[plugins.EnabledChannel] = field(default_factory=list)

    @property
    def redis_prefix(self) -> str:
        return redis_prefix(self.settings)

    async def warm_up(self) -> None:
        """Load now what the first customers' turns would otherwise wait for: the embedding
        model, the knowledge's in-memory table and word index, and the vectors of the
        example phrases the signals are read with (one whole bot decision does all three).
        Without it, the first seconds of a surge answered in seconds, not milliseconds.

        A failing embedding backend (an endpoint that is down) does not stop the server: it
        starts, /readyz says it is not ready and why, and it is ready once the backend
        answers again.
        """
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self.index.embedder.embed_query, "warm up"), WARM_UP_SECONDS
            )
        except TimeoutError:
            log.error("the embedding backend did not answer within %g s", WARM_UP_SECONDS)
            return
        except Exception as error:
            log.error(
                "the embedding backend failed; not ready until it answers: %s", error, exc_info=True
            )
            return
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self.front_line.bot.decide, "How do I get started?"),
                KNOWLEDGE_WARM_UP_SECONDS,
            )
        except TimeoutError:
            log.warning(
                "the knowledge did not load within %g s; the first question waits for it",
                KNOWLEDGE_WARM_UP_SECONDS,
            )
        except Exception as error:
            # The knowledge (say a Chroma server) is loaded on the first question instead.
            log.warning("could not load the knowledge before the first question: %s", error)

    async def close(self) -> None:
        close_answerer = getattr(self.front_line.answerer, "close", None)
        if close_answerer is not None:
            try:
                await close_answerer()
            except Exception:
                log.exception("the answerer failed to close")
        self.front_line.close()
        await self.bus.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.store.engine.dispose()


def redis_prefix(settings: Settings) -> str:
    """Where the brand's keys and channel live in Redis: `<namespace>:<brand>`."""
    return f"{settings.redis.namespace}:{settings.brand}"


class RedisUnavailable(Exception):
    """Redis is configured but cannot be reached; the message says where and why."""


REDIS_CONNECTIONS = 500  # per server process


async def _connect_redis(settings: Settings) -> tuple[redis.Redis, RedisEventBus]:
    assert settings.redis.url is not None
    # A caller waits for a free connection (up to 10 s) instead of failing: under a surge,
    # turn leases, rate limits and events need more than redis-py's default 100 at once,
    # and a failed publish makes WebSockets resume from the store.
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis.url, max_connections=REDIS_CONNECTIONS, timeout=10
    )
    client = redis.Redis.from_pool(pool)  # closing the client closes its pool
    bus = RedisEventBus(client, redis_prefix(settings))
    try:
        await client.ping()
        await bus.start()
    except Exception as error:
        await bus.close()  # stops its reader, which would keep retrying
        await client.aclose()
        where = settings.redis.url.split("@")[-1]  # no password in the message
        raise RedisUnavailable(f"cannot reach Redis at {where} (redis.url): {error}") from error
    return client, bus


async def start(
    settings: Settings,
    *,
    index: KnowledgeIndex | None = None,
    bus: EventBus | None = None,
    answerability: AnswerabilityModel | None = None,
) -> GigCX:
    """Open the store (migrating it), the knowledge index and the bot for `settings`.

    Raises ConfigError (a PluginError for a plugin that fails to load) before opening
    anything when the answerer or a channel cannot be used with these settings.
    """
    channels = plugins.enabled_channels(settings)
    plugins.check_settings(settings)
    engine = create_engine(settings.store)
    try:
        await upgrade_database(engine)
    except Exception:
        await engine.dispose()
        raise
    # One outbox row per change for each enabled channel that consumes its kind.
    store = ConversationStore(engine, consumers=plugins.outbox_consumers(channels))
    shared: redis.Redis | None = None
    if bus is None and settings.redis.url is not None:
        try:
            shared, bus = await _connect_redis(settings)
        except RedisUnavailable:
            await engine.dispose()
            raise
    bus = bus or InProcessEventBus()
    index = index or open_index(settings)
    # Each gig expert's resolution becomes a knowledge draft for the brand team.
    drafter = Drafter(settings, store, index.embedder.embed_documents)
    escalations = Escalations(settings, store, bus, on_resolved=drafter)
    bot = FrontLineBot(settings, index, answerability)
    threads = knowledge_thread_pool()
    answerer = plugins.create_answerer(settings, AnswererContext(settings, bot, threads))
    front_line = FrontLine(
        settings,
        store,
        bus,
        bot,
        escalations,
        answerer,
        turn_locks=shared,
        turn_lock_prefix=redis_prefix(settings),
        knowledge_threads=threads,
    )
    return GigCX(settings, store, bus, index, escalations, front_line, shared, channels)
