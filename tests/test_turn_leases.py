"""Turn leases against this machine's Redis: one process's leases are renewed together (one
Redis call a round however many turns it holds), a lease another worker took after a stall
is let go, and a turn waits for another worker's turn on the same conversation."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from gigcx.bot.turn_leases import TurnLeases
from tests.helpers.check_services import REDIS_URL

LEASE = 0.3


@pytest.fixture
async def clients() -> AsyncIterator[tuple[redis.Redis, redis.Redis]]:
    """Two clients, as two server processes would have (callers wait for a connection, as
    the server's do)."""

    def client() -> redis.Redis:
        pool = redis.BlockingConnectionPool.from_url(REDIS_URL, max_connections=20, timeout=10)
        return redis.Redis(connection_pool=pool)

    one, two = client(), client()
    yield one, two
    await one.aclose()
    await two.aclose()


@pytest.fixture
def prefix() -> str:
    return f"gigcx-test-{uuid.uuid4().hex[:10]}"


async def test_many_turns_longer_than_a_lease_keep_theirs_with_one_call_a_round(
    clients: tuple[redis.Redis, redis.Redis], prefix: str
) -> None:
    one, two = clients
    mine = TurnLeases(one, prefix, LEASE, wait_seconds=0.0)
    other_worker = TurnLeases(two, prefix, LEASE, wait_seconds=0.0)
    conversations = [f"c{n}" for n in range(200)]
    entered = asyncio.Event()
    finish = asyncio.Event()
    inside = 0

    async def turn(conversation_id: str) -> bool:
        nonlocal inside
        async with mine.hold(conversation_id) as waited:
            inside += 1
            if inside == len(conversations):
                entered.set()
            await finish.wait()
            return waited

    turns = [asyncio.create_task(turn(c)) for c in conversations]
    await asyncio.wait_for(entered.wait(), 10)
    await asyncio.sleep(LEASE * 5)  # five leases long
    # Every turn still holds its conversation: another worker cannot take any of them.
    for conversation_id in conversations[:: len(conversations) // 10]:
        async with other_worker.hold(conversation_id) as waited:
            assert waited, f"{conversation_id}'s lease ran out while its turn was running"
    rounds = mine.renewal_calls
    assert 5 <= rounds <= 5 * 3 + 2, f"{rounds} renewal calls for 200 turns over 5 leases"
    finish.set()
    assert await asyncio.gather(*turns) == [False] * len(conversations)
    # Given back: the next turn on each conversation starts at once.
    async with other_worker.hold(conversations[0]) as waited:
        assert not waited
    await asyncio.sleep(LEASE)
    assert mine._renewing is not None and mine._renewing.done(), "renewing with nothing held"


async def test_a_second_worker_waits_for_the_turn_then_takes_it(
    clients: tuple[redis.Redis, redis.Redis], prefix: str
) -> None:
    one, two = clients
    first = TurnLeases(one, prefix, LEASE, wait_seconds=10.0)
    second = TurnLeases(two, prefix, LEASE, wait_seconds=10.0)
    order: list[str] = []

    async def slow() -> None:
        async with first.hold("c") as waited:
            assert not waited
            order.append("first in")
            await asyncio.sleep(LEASE * 4)
            order.append("first out")

    task = asyncio.create_task(slow())
    while not order:
        await asyncio.sleep(0.01)
    async with second.hold("c") as waited:
        assert waited
        order.append("second in")
    await task
    assert order == ["first in", "first out", "second in"]


async def test_a_lease_taken_by_another_worker_after_a_stall_is_let_go(
    clients: tuple[redis.Redis, redis.Redis], prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    one, two = clients
    stalled = TurnLeases(one, prefix, LEASE, wait_seconds=0.0)
    async with stalled.hold("c"):
        # The lease runs out (as if this process stalled) and another worker takes it.
        await one.delete(stalled.key("c"))
        await two.set(stalled.key("c"), "another worker's token", px=10_000)
        with caplog.at_level(logging.WARNING, logger="gigcx.bot.turn_leases"):
            await asyncio.sleep(LEASE)
        assert "ran out before the turn ended" in caplog.text
    # Leaving the turn does not give back the other worker's lease.
    assert await two.get(stalled.key("c")) == b"another worker's token"


async def test_a_lease_that_ran_out_with_nobody_waiting_is_taken_again(
    clients: tuple[redis.Redis, redis.Redis], prefix: str
) -> None:
    one, two = clients
    stalled = TurnLeases(one, prefix, LEASE, wait_seconds=0.0)
    other_worker = TurnLeases(two, prefix, LEASE, wait_seconds=0.0)
    async with stalled.hold("c"):
        await one.delete(stalled.key("c"))  # ran out while this process stalled
        await asyncio.sleep(LEASE)  # the next renewal round takes it again
        async with other_worker.hold("c") as waited:
            assert waited, "another worker took a turn that was still running"
