"""Two workers (two runtimes on one store and one Redis) get two messages of one
conversation at once, and the first turn outlasts the turn lease many times over (a slow
language model): the lease is renewed while the turn runs, so the second turn starts only
after the first has ended, and both are answered."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

from gigcx.app import start
from gigcx.config import Settings
from tests.helpers.chat_server import OpenAIChatServer
from tests.helpers.check_services import REDIS_URL

LEASE_SECONDS = 1.0
TURN_SECONDS = 4.0  # four leases


class SlowModel:
    """A language model that takes TURN_SECONDS to answer, counting answers in progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.answering = 0
        self.most_at_once = 0
        self.answered = 0

    def reply(self, body: dict[str, Any]) -> str:
        with self._lock:
            self.answering += 1
            self.most_at_once = max(self.most_at_once, self.answering)
        time.sleep(TURN_SECONDS)
        with self._lock:
            self.answering -= 1
            self.answered += 1
        text = "We ship to the United States, Canada and the United Kingdom [1]."
        return json.dumps({"escalate": False, "answer": text, "citations": [1]})


def scaled_out_llm(settings: Settings, base_url: str) -> Settings:
    bot = settings.bot.model_copy(
        update={
            "answer_threshold": 0.05,  # every shipping question reaches the model
            "mode": "llm",
            "llm": settings.bot.llm.model_copy(
                update={"base_url": base_url, "model": "local-test", "timeout_seconds": 30}
            ),
        }
    )
    redis = settings.redis.model_copy(
        update={"url": REDIS_URL, "namespace": f"gigcx-test-{uuid.uuid4().hex[:10]}"}
    )
    return settings.model_copy(update={"bot": bot, "redis": redis})


async def test_a_turn_longer_than_its_lease_is_never_run_beside_another(
    brand_settings: Settings,
):
    model = SlowModel()
    with OpenAIChatServer(model.reply) as server:
        settings = scaled_out_llm(brand_settings, server.base_url)
        first, second = await start(settings), await start(settings)
        try:
            for worker in (first, second):
                # Loaded first, as `gigcx serve` does: loading stalls the event loop for long.
                await asyncio.to_thread(worker.index.embedder.embed_query, "warm up")
                leases = worker.front_line.turn_leases
                assert leases is not None
                leases.lease_seconds = LEASE_SECONDS
            conversation = await first.front_line.start_conversation()
            cid = conversation.id
            one = asyncio.create_task(
                first.front_line.handle_customer_message(cid, "do you ship to canada?")
            )
            deadline = time.monotonic() + 30
            while not server.requests:  # the first turn holds the lease and is answering
                assert time.monotonic() < deadline, "the first turn never reached the model"
                await asyncio.sleep(0.01)
            two = asyncio.create_task(
                second.front_line.handle_customer_message(cid, "do you ship to the UK?")
            )
            turns = await asyncio.gather(one, two)
        finally:
            await first.close()
            await second.close()

    assert model.answered == 2
    assert model.most_at_once == 1, "the second turn ran while the first was still going"
    assert [[r.author for r in turn.replies] for turn in turns] == [["bot"], ["bot"]]
