"""What several server processes share, against this machine's Redis: events, rate limits;
and what they coordinate through the store: the sweeper lease. Plus /readyz and /metrics."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from sqlalchemy import update

from gigcx.app import GigCX, RedisUnavailable, start
from gigcx.config import Settings
from gigcx.connectors.web import create_app
from gigcx.connectors.web.ratelimit import Check, RedisLimiter
from gigcx.events import Event, SubscriptionOverflow
from gigcx.events.redis_bus import RedisEventBus
from gigcx.store import ConversationStore
from gigcx.store.models import Lease, utcnow
from tests.helpers.check_services import REDIS_URL
from tests.test_web_api import say, start_chat


@pytest.fixture
def prefix() -> str:
    """A namespace of this test's own, so tests never see each other's keys or events."""
    return f"gigcx-test-{uuid.uuid4().hex[:10]}:kestrel"


@pytest.fixture
async def clients() -> AsyncIterator[list[redis.Redis]]:
    """Two connections, as two server processes would have."""
    made = [redis.from_url(REDIS_URL), redis.from_url(REDIS_URL)]
    yield made
    for client in made:
        await client.aclose()


async def test_an_event_published_by_one_process_reaches_subscribers_in_another(
    clients: list[redis.Redis], prefix: str
):
    worker_a, worker_b = (RedisEventBus(client, prefix) for client in clients)
    await worker_a.start()
    await worker_b.start()
    try:
        async with worker_b.subscribe("c1") as only_c1, worker_a.subscribe() as everything:
            for n in range(50):
                await worker_a.publish(Event("message.created", "kestrel", f"c{n % 2}", {"n": n}))
            got_c1 = [(await anext(aiter(only_c1))).data["n"] for _ in range(25)]
            got_all = [(await anext(aiter(everything))).data["n"] for _ in range(50)]
        assert got_c1 == list(range(1, 50, 2))  # only its conversation, in publish order
        assert got_all == list(range(50))  # the publisher's own subscribers get them too
    finally:
        await worker_a.close()
        await worker_b.close()


async def test_losing_the_redis_connection_tells_subscribers_to_resume_from_the_store(
    clients: list[redis.Redis], prefix: str
):
    bus = RedisEventBus(clients[0], prefix)
    await bus.start()
    try:
        async with bus.subscribe("c1") as subscription:
            await clients[1].client_kill_filter(_type="pubsub")  # the connection drops
            with pytest.raises(SubscriptionOverflow):
                async for _event in subscription:
                    pass
        for _ in range(100):  # and the bus reconnects by itself
            try:
                await bus.check()
                break
            except ConnectionError:
                await asyncio.sleep(0.05)
        async with bus.subscribe("c1") as subscription:
            await bus.publish(Event("typing", "kestrel", "c1", {"active": True}))
            event = await asyncio.wait_for(anext(aiter(subscription)), 5)
        assert event.data == {"active": True}
    finally:
        await bus.close()


async def test_a_publish_that_fails_makes_only_that_conversations_subscribers_resume(
    prefix: str,
):
    """Redis answering but out of connections for one publish is not Redis lost: the
    customers of other conversations on this worker keep their WebSockets."""
    pool = redis.BlockingConnectionPool.from_url(REDIS_URL, max_connections=1, timeout=0.05)
    client = redis.Redis.from_pool(pool)
    bus = RedisEventBus(client, prefix)
    await bus.start()  # its subscriber holds the pool's one connection: publishing must fail
    try:
        async with bus.subscribe("c1") as mine, bus.subscribe("c2") as other:
            await bus.publish(Event("typing", "kestrel", "c1", {"active": True}))
            with pytest.raises(SubscriptionOverflow):
                async for _event in mine:
                    pass
            assert not other.overflowed
    finally:
        await bus.close()
        await client.aclose()


async def test_rate_limits_are_counted_across_processes(clients: list[redis.Redis], prefix: str):
    worker_a, worker_b = (RedisLimiter(client, prefix) for client in clients)
    per_ip = Check("ip", "203.0.113.7", 3, "from this address")
    for worker in (worker_a, worker_b, worker_a):
        assert await worker.hit([per_ip]) is None
    refusal = await worker_b.hit([per_ip, Check("conversation", "c9", 20, "here")])
    assert refusal is not None and refusal.check == per_ip
    assert 1 <= refusal.retry_after <= 60
    # The refused request counted nowhere: the conversation still has all 20.
    for _ in range(20):
        assert await worker_a.hit([Check("conversation", "c9", 20, "here")]) is None
    assert await worker_a.hit([Check("ip", "198.51.100.1", 3, "from this address")]) is None
    # Looking whether a limit is reached counts nothing, in any process.
    failures = Check("console", "198.51.100.2", 1, "wrong console tokens from this address")
    assert await worker_a.reached([failures]) is None
    assert await worker_b.hit([failures]) is None
    reached = await worker_a.reached([failures])
    assert reached is not None and reached.check == failures


async def test_one_process_holds_the_sweeper_lease_until_it_stops_renewing(
    store: ConversationStore,
):
    # Long enough that no stall of a busy machine lets it run out between two calls; the
    # holder's death is then played by moving its expiry into the past.
    lease, ttl = "sweeper:kestrel", timedelta(seconds=30)
    results = await asyncio.gather(*(store.hold_lease(lease, f"worker-{n}", ttl) for n in range(5)))
    assert sorted(results) == [False] * 4 + [True]
    holder = f"worker-{results.index(True)}"
    other = "worker-9"
    assert await store.hold_lease(lease, holder, ttl)  # renewed
    assert not await store.hold_lease(lease, other, ttl)
    async with store._sessions.begin() as session:  # the holder died: the lease runs out
        await session.execute(
            update(Lease)
            .where(Lease.name == lease)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert await store.hold_lease(lease, other, ttl)
    assert not await store.hold_lease(lease, holder, ttl)


@pytest.fixture
async def scaled_runtime(brand_settings: Settings, prefix: str) -> AsyncIterator[GigCX]:
    namespace = prefix.split(":")[0]
    settings = brand_settings.model_copy(
        update={
            "redis": brand_settings.redis.model_copy(
                update={"url": REDIS_URL, "namespace": namespace}
            )
        }
    )
    runtime = await start(settings)
    yield runtime
    await runtime.close()


async def test_readiness_names_each_dependency_and_fails_when_one_is_down(
    scaled_runtime: GigCX,
):
    app = create_app(scaled_runtime.settings, scaled_runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        checks = ready.json()["checks"]
        assert checks["store"] == "ok" and checks["events"] == "ok"
        assert checks["knowledge"].startswith("ok (") and "chunks" in checks["knowledge"]

        unreachable = redis.from_url("redis://127.0.0.1:1/0")
        working, scaled_runtime.bus = scaled_runtime.bus, RedisEventBus(unreachable, "x")
        try:
            down = await http.get("/readyz")
        finally:
            scaled_runtime.bus = working
            await unreachable.aclose()
        assert down.status_code == 503
        assert down.json()["status"] == "not ready"
        assert down.json()["checks"]["events"].startswith("failed: ConnectionError")
        assert (await http.get("/healthz")).status_code == 200  # alive, just not ready


async def test_metrics_count_requests_decisions_and_waiting_handoffs(scaled_runtime: GigCX):
    answered = 'gigcx_bot_decisions_total{action="answer",reason=""}'
    escalated = 'gigcx_bot_decisions_total{action="escalate",reason="human_requested"}'
    posted = (
        'gigcx_http_requests_total{method="POST",'
        'route="/v1/conversations/{conversation_id}/messages",status="201"}'
    )
    timed = "gigcx_bot_reply_seconds_count"
    app = create_app(scaled_runtime.settings, scaled_runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        # Counters live for the whole test process: compare with what they were before.
        before = (await http.get("/metrics")).text
        cid, auth = await start_chat(http)
        await say(http, cid, auth, "how do I pair my X2 with my phone?")
        other, other_auth = await start_chat(http)
        await say(http, other, other_auth, "I want to talk to a human")
        after = (await http.get("/metrics")).text
    for name, grew_by in ((answered, 1), (escalated, 1), (posted, 2), (timed, 2)):
        assert metric(after, name) - metric(before, name) == grew_by, name
    assert metric(after, "gigcx_handoffs_waiting") == 1


def metric(text: str, name: str) -> float:
    """The value of the sample `name` (with its labels) in Prometheus' text format; 0 if absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_an_unreachable_redis_is_named_at_start(brand_settings: Settings):
    settings = brand_settings.model_copy(
        update={"redis": brand_settings.redis.model_copy(update={"url": "redis://127.0.0.1:1/0"})}
    )
    with pytest.raises(
        RedisUnavailable, match=r"cannot reach Redis at redis://127.0.0.1:1/0 \(redis.url\)"
    ):
        await start(settings)


async def test_a_stray_message_on_the_channel_is_ignored(clients: list[redis.Redis], prefix: str):
    bus = RedisEventBus(clients[0], prefix)
    await bus.start()
    try:
        async with bus.subscribe() as subscription:
            await clients[1].publish(bus.channel, "not an event")
            await bus.publish(Event("typing", "kestrel", "c1", {"active": False}))
            event = await asyncio.wait_for(anext(aiter(subscription)), 5)
        assert event.type == "typing"
    finally:
        await bus.close()


async def test_customers_are_not_refused_when_redis_is_away():
    unreachable = redis.from_url("redis://127.0.0.1:1/0")
    try:
        limiter = RedisLimiter(unreachable, "x")
        assert await limiter.hit([Check("ip", "203.0.113.9", 1, "from this address")]) is None
    finally:
        await unreachable.aclose()


async def test_two_processes_answer_one_conversation_one_turn_at_a_time(
    brand_settings: Settings, prefix: str
):
    redis_settings = brand_settings.redis.model_copy(
        update={"url": REDIS_URL, "namespace": prefix.split(":")[0]}
    )
    # Every question is answered (no escalation ends the conversation's turns early): this
    # test is about turns taking turns, not about which questions the bot can answer.
    bot = brand_settings.bot.model_copy(update={"answer_threshold": 0.0})
    settings = brand_settings.model_copy(update={"redis": redis_settings, "bot": bot})
    one, two = await start(settings), await start(settings)  # two workers, one store
    spans: list[tuple[float, float]] = []

    def slowly(decide: Any) -> Any:
        def timed(text: str, history: Any) -> Any:
            began = time.monotonic()
            time.sleep(0.3)
            decision = decide(text, history)
            spans.append((began, time.monotonic()))
            return decision

        return timed

    try:
        for worker in (one, two):
            worker.front_line.bot.decide = slowly(worker.front_line.bot.decide)  # type: ignore[method-assign]
        conversation = await one.front_line.start_conversation()
        await asyncio.gather(
            one.front_line.handle_customer_message(conversation.id, "how do I pair my X1?"),
            two.front_line.handle_customer_message(
                conversation.id, "how do I connect the X2 to my iPhone?"
            ),
        )
        assert len(spans) == 2, "the bot decides both questions"
        first, second = sorted(spans)
        assert second[0] >= first[1]  # the second turn began after the first ended
        messages = await one.store.messages_after(conversation.id)
        assert [m.author for m in messages] == ["customer", "customer", "bot", "bot"]
    finally:
        await one.close()
        await two.close()
