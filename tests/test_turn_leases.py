"""Turn leases against this machine's Redis: one process's leases are renewed together (one
Redis call a round however many turns it holds), a lease another worker took after a stall
is let go, and a turn waits for another worker's turn on the same conversation."""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as redis

from gigcx.bot.turn_leases import TurnLeases
from tests.helpers.check_services import REDIS_URL

# Long enough that a busy machine's stalls of the event loop do not let a lease run out.
LEASE = 1.0


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


async def until(condition: Callable[[], bool | Awaitable[int]], seconds: float = 10.0) -> None:
    """Wait until `condition()` (a value, or an awaitable one) is true."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        assert asyncio.get_running_loop().time() < deadline, f"not within {seconds:g} s"
        await asyncio.sleep(0.02)


Workers = Callable[[float], tuple[TurnLeases, TurnLeases]]


@pytest.fixture
def workers(clients: tuple[redis.Redis, redis.Redis]) -> Workers:
    """Two workers' turn leases, in a namespace of this test's own; each waits up to the
    given seconds for another's turn."""
    prefix = f"gigcx-test-{uuid.uuid4().hex[:10]}"

    def make(wait_seconds: float) -> tuple[TurnLeases, TurnLeases]:
        one, two = clients
        return (
            TurnLeases(one, prefix, LEASE, wait_seconds=wait_seconds),
            TurnLeases(two, prefix, LEASE, wait_seconds=wait_seconds),
        )

    return make


async def test_many_turns_longer_than_a_lease_keep_theirs_with_one_call_a_round(
    workers: Workers,
) -> None:
    mine, other_worker = workers(0.0)
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


async def test_a_second_worker_waits_for_the_turn_then_takes_it(workers: Workers) -> None:
    first, second = workers(10.0)
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
    clients: tuple[redis.Redis, redis.Redis], workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    one, two = clients
    stalled, _ = workers(0.0)
    async with stalled.hold("c"):
        # The lease runs out (as if this process stalled) and another worker takes it.
        await one.delete(stalled.key("c"))
        await two.set(stalled.key("c"), "another worker's token", px=10_000)
        with caplog.at_level(logging.WARNING, logger="gigcx.bot.turn_leases"):
            await until(lambda: "ran out before the turn ended" in caplog.text)
    # Leaving the turn does not give back the other worker's lease.
    assert await two.get(stalled.key("c")) == b"another worker's token"


async def test_a_lease_that_ran_out_with_nobody_waiting_is_taken_again(
    clients: tuple[redis.Redis, redis.Redis], workers: Workers
) -> None:
    one, _ = clients
    stalled, other_worker = workers(0.0)
    async with stalled.hold("c"):
        await one.delete(stalled.key("c"))  # ran out while this process stalled
        key = stalled.key("c")
        await until(lambda: one.exists(key))  # the next renewal round takes it again
        async with other_worker.hold("c") as waited:
            assert waited, "another worker took a turn that was still running"
