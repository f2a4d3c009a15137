"""The conversation store on SQLite and PostgreSQL: numbering, guarded state changes."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text, update

from gigcx.config import StoreSettings
from gigcx.store import (
    EXPERT_CHANNEL_KINDS,
    ClaimerNotEligible,
    ConversationNotFound,
    ConversationStore,
    create_engine,
    upgrade_database,
)
from gigcx.store.database import current_revision
from gigcx.store.models import Expert, Handoff, OutboxItem, utcnow
from tests.helpers.processes import POSTGRES_ADMIN_URL, postgres_database
from tests.test_cli import gigcx

MINUTE = timedelta(minutes=1)


async def open_handoff(store: ConversationStore, conversation_id: str) -> str:
    opened = await store.open_handoff(
        conversation_id,
        reason="human_requested",
        route="expert",
        tags=["product:x2"],
        packet={"reason": "human_requested"},
        notice="A person will take over.",
        notice_meta={"kind": "handover"},
        claim_timeout=MINUTE,
    )
    assert opened is not None
    return opened[0].id


async def register(
    store: ConversationStore, *ids: str, brand: str = "kestrel", tier: str = "gig"
) -> None:
    """Experts in the brand's registry, as `gigcx experts sync` writes them."""
    experts = [Expert(key=i, name=i, tier=tier, capacity=3, active=True) for i in ids]
    await store.sync_experts(brand, experts)


async def test_messages_are_numbered_in_order_and_read_after_a_sequence(store: ConversationStore):
    conversation = await store.create_conversation("kestrel", attributes={"plan": "gold"})
    for text_ in ["hi", "my x2 won't pair", "thanks"]:
        await store.add_message(conversation.id, "customer", text_)
    later = await store.messages_after(conversation.id, after_seq=1)
    assert [(m.seq, m.text) for m in later] == [(2, "my x2 won't pair"), (3, "thanks")]
    again = await store.get_conversation(conversation.id)
    assert again.customer_attributes == {"plan": "gold"}
    assert again.last_seq == 3


async def test_concurrent_writers_get_gapless_unique_sequence_numbers(store: ConversationStore):
    conversation = await store.create_conversation("kestrel")
    writers = 40

    async def write(number: int) -> None:
        author = "customer" if number % 2 else "bot"
        await store.add_message(conversation.id, author, f"message {number}")

    await asyncio.gather(*(write(n) for n in range(writers)))
    messages = await store.messages_after(conversation.id)
    assert [m.seq for m in messages] == list(range(1, writers + 1))
    assert sorted(m.text for m in messages) == sorted(f"message {n}" for n in range(writers))


async def test_a_message_to_an_unknown_conversation_is_refused_and_nothing_is_numbered(
    store: ConversationStore,
):
    with pytest.raises(ConversationNotFound):
        await store.add_message("nope", "customer", "hello")
    conversation = await store.create_conversation("kestrel")
    await store.add_message(conversation.id, "customer", "hello")
    assert [m.seq for m in await store.messages_after(conversation.id)] == [1]


async def test_the_bot_cannot_write_once_the_conversation_is_escalated(store: ConversationStore):
    conversation = await store.create_conversation("kestrel")
    await store.add_message(conversation.id, "customer", "I want a human")
    await open_handoff(store, conversation.id)
    assert (await store.get_conversation(conversation.id)).state == "waiting"
    late = await store.add_message(conversation.id, "bot", "Here is a tip!", only_in_state="bot")
    assert late is None
    # The customer can still write; only the bot is held back.
    assert await store.add_message(conversation.id, "customer", "hello?") is not None
    authors = [m.author for m in await store.messages_after(conversation.id)]
    assert authors == ["customer", "bot", "customer"]


async def test_escalating_twice_opens_one_handoff(store: ConversationStore):
    conversation = await store.create_conversation("kestrel")
    await open_handoff(store, conversation.id)
    second = await store.open_handoff(
        conversation.id,
        reason="frustration",
        route="expert",
        tags=[],
        packet={},
        notice="again",
        notice_meta={},
        claim_timeout=MINUTE,
    )
    assert second is None
    assert [m.text for m in await store.messages_after(conversation.id)] == [
        "A person will take over."
    ]


async def test_two_experts_claim_at_once_and_exactly_one_wins(store: ConversationStore):
    conversation = await store.create_conversation("kestrel")
    handoff_id = await open_handoff(store, conversation.id)
    await register(store, *(f"expert-{n}" for n in range(8)))
    results = await asyncio.gather(
        *(store.claim_handoff("kestrel", handoff_id, f"expert-{n}", MINUTE) for n in range(8))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].state == "assigned"
    assert (await store.get_conversation(conversation.id)).state == "assigned"
    # A repeated claim by the winner changes nothing.
    assert (
        await store.claim_handoff("kestrel", handoff_id, winners[0].assignee or "", MINUTE) is None
    )


async def test_only_the_brands_registered_experts_claim_and_up_to_their_capacity(
    store: ConversationStore,
):
    handoffs = [
        await open_handoff(store, (await store.create_conversation("kestrel")).id) for _ in range(4)
    ]
    await register(store, "ana", brand="other-brand")
    with pytest.raises(ClaimerNotEligible) as refused:
        await store.claim_handoff("kestrel", handoffs[0], "ana", MINUTE)
    assert refused.value.reason == "unregistered"
    await register(store, "ana")  # capacity 3
    # A handoff of another brand is not claimed through this brand's registry.
    elsewhere = await store.create_conversation("other-brand")
    assert (
        await store.claim_handoff("kestrel", await open_handoff(store, elsewhere.id), "ana", MINUTE)
        is None
    )
    for handoff_id in handoffs[:3]:
        assert await store.claim_handoff("kestrel", handoff_id, "ana", MINUTE) is not None
    with pytest.raises(ClaimerNotEligible) as refused:
        await store.claim_handoff("kestrel", handoffs[3], "ana", MINUTE)
    assert (refused.value.reason, refused.value.capacity) == ("full", 3)
    assert (await store.get_handoff(handoffs[3])).state == "waiting"


async def test_release_reoffer_hand_back_and_resolve_follow_the_state_machine(
    store: ConversationStore,
):
    conversation = await store.create_conversation("kestrel")
    handoff_id = await open_handoff(store, conversation.id)
    await register(store, "ana", "bob", tier="staff")

    reoffered = await store.reoffer_handoff(handoff_id, MINUTE, route="staff")
    assert reoffered is not None and reoffered.route == "staff" and reoffered.offers == 2

    await store.claim_handoff("kestrel", handoff_id, "ana", MINUTE)
    assert await store.release_handoff(handoff_id, "bob", MINUTE) is None, "only the holder"
    released = await store.release_handoff(handoff_id, "ana", MINUTE)
    assert released is not None and released.state == "waiting" and released.assignee is None
    assert (await store.get_conversation(conversation.id)).state == "waiting"

    await store.claim_handoff("kestrel", handoff_id, "bob", MINUTE)
    assert await store.resolve_handoff(handoff_id, "ana") is None
    resolved = await store.resolve_handoff(handoff_id, "bob")
    assert resolved is not None and resolved.state == "resolved"
    assert (await store.get_conversation(conversation.id)).state == "resolved"
    assert await store.hand_back(handoff_id, "bob") is None, "a resolved handoff stays resolved"

    assert await store.reopen(conversation.id)
    assert (await store.get_conversation(conversation.id)).state == "bot"


async def test_hand_back_returns_the_conversation_to_the_bot(store: ConversationStore):
    conversation = await store.create_conversation("kestrel")
    handoff_id = await open_handoff(store, conversation.id)
    await register(store, "ana")
    await store.claim_handoff("kestrel", handoff_id, "ana", MINUTE)
    returned = await store.hand_back(handoff_id, "ana", notice="Ana handed you back.")
    assert returned is not None
    handoff, notice = returned
    assert handoff.state == "returned"
    assert notice is not None and (notice.author, notice.text) == ("system", "Ana handed you back.")
    assert (await store.get_conversation(conversation.id)).state == "bot"
    assert await store.open_handoff_for(conversation.id) is None
    assert await store.add_message(conversation.id, "bot", "back", only_in_state="bot")


async def test_migrations_are_numbered_and_rerunning_them_changes_nothing(store_url: str):
    engine = create_engine(StoreSettings(url=store_url))
    await upgrade_database(engine)
    store = ConversationStore(engine)
    conversation = await store.create_conversation("kestrel")
    await store.add_message(conversation.id, "customer", "kept")
    await upgrade_database(engine)
    assert await current_revision(engine) == "0011"
    async with engine.connect() as connection:
        count = await connection.scalar(text("select count(*) from messages"))
    assert count == 1
    await engine.dispose()


async def test_a_handoff_whose_conversation_moved_on_is_not_changed(store: ConversationStore):
    conversation = await store.create_conversation("kestrel")
    handoff_id = await open_handoff(store, conversation.id)
    await register(store, "ana")
    async with store.engine.begin() as connection:
        await connection.execute(
            text("update conversations set state = 'resolved' where id = :id"),
            {"id": conversation.id},
        )
    assert await store.claim_handoff("kestrel", handoff_id, "ana", MINUTE) is None
    handoff = await store.get_handoff(handoff_id)
    assert (handoff.state, handoff.assignee) == ("waiting", None)
    assert (await store.get_conversation(conversation.id)).state == "resolved"


async def test_a_resolution_can_be_rated_once(store: ConversationStore):
    conversation = await store.create_conversation("kestrel")
    handoff_id = await open_handoff(store, conversation.id)
    await register(store, "ana")
    await store.claim_handoff("kestrel", handoff_id, "ana", MINUTE)
    await store.resolve_handoff(handoff_id, "ana")
    handoff = await store.last_resolved_handoff(conversation.id)
    assert handoff is not None and handoff.id == handoff_id
    rated = await store.record_csat(handoff, 5, "Ana fixed it")
    assert rated is not None and (rated.score, rated.assignee) == (5, "ana")
    assert await store.record_csat(handoff, 1, "changed my mind") is None


async def test_the_outbox_keeps_each_handoffs_changes_in_order_and_leases_them_once(
    store_url: str,
):
    engine = create_engine(StoreSettings(url=store_url))
    await upgrade_database(engine)
    store = ConversationStore(engine, consumers={"slack": EXPERT_CHANNEL_KINDS})
    try:
        first = await store.create_conversation("kestrel")
        second = await store.create_conversation("kestrel")
        await store.add_message(first.id, "customer", "before any handoff")  # nothing to tell
        one, two = await open_handoff(store, first.id), await open_handoff(store, second.id)
        hello = await store.add_message(first.id, "customer", "hello?")
        await register(store, "U1")
        await store.claim_handoff("kestrel", one, "U1", MINUTE)
        await store.add_message(first.id, "expert", "Hi, I'm on it")  # Slack wrote it itself

        now = utcnow()
        heads = await store.outbox_heads("slack", now)
        # One head per handoff: the first change of each, not what follows it.
        assert [(h.handoff_id, h.kind) for h in heads] == [(one, "requested"), (two, "requested")]
        # Two server processes take at once: each item goes to one of them.
        taken = await asyncio.gather(
            store.take_outbox("slack", now, MINUTE), store.take_outbox("slack", now, MINUTE)
        )
        held = {item.id: item for batch in taken for item in batch}
        assert sorted(held) == [h.id for h in heads]
        assert await store.outbox_heads("slack", now) == []  # both leased away
        assert await store.outbox_retry(held[heads[1].id], "", now)  # the second: let go

        # A failed delivery waits for its retry time and keeps the items behind it waiting.
        await store.outbox_retry(held[heads[0].id], "Slack said not_in_channel", now + MINUTE)
        assert [h.handoff_id for h in await store.outbox_heads("slack", now)] == [two]
        [retry, _] = await store.outbox_heads("slack", now + 2 * MINUTE)
        assert (retry.kind, retry.attempts, retry.last_error) == (
            "requested",
            1,
            "Slack said not_in_channel",
        )

        later = now + 2 * MINUTE

        async def take_next_of_one() -> OutboxItem:
            return {i.handoff_id: i for i in await store.take_outbox("slack", later, MINUTE)}[one]

        assert not await store.outbox_delivered(retry)  # let go of: nobody holds it now
        head = await take_next_of_one()
        assert await store.outbox_delivered(head)
        head = await take_next_of_one()
        assert (head.kind, head.message_id) == ("customer_message", hello.id)
        await store.outbox_delivered(head)
        assert (await take_next_of_one()).kind == "claimed"
        assert (await store.outbox_backlog("slack"))[0] == 2
    finally:
        await engine.dispose()


async def test_server_processes_starting_together_migrate_once(store_url: str):
    engines = [create_engine(StoreSettings(url=store_url)) for _ in range(4)]
    try:
        await asyncio.gather(*(upgrade_database(engine) for engine in engines))
        assert {await current_revision(engine) for engine in engines} == {"0011"}
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_message_read_back_serialises_in_utc_exactly_as_when_fresh(
    store: ConversationStore,
):
    conversation = await store.create_conversation("kestrel")
    fresh = await store.add_message(conversation.id, "customer", "hi")
    assert fresh is not None
    [read_back] = await store.messages_after(conversation.id)
    assert read_back.to_dict() == fresh.to_dict()
    assert read_back.to_dict()["created_at"].endswith("+00:00")
    again = await store.get_conversation(conversation.id)
    assert again.created_at.utcoffset() == timedelta(0)


async def test_a_time_given_in_another_zone_is_kept_as_the_same_instant_in_utc(
    store: ConversationStore,
):
    """SQLite keeps no zone: 12:00+02:00 must be written as 10:00 UTC, not as 12:00."""
    conversation = await store.create_conversation("kestrel")
    handoff_id = await open_handoff(store, conversation.id)
    in_paris = datetime(2026, 11, 3, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    async with store.engine.begin() as connection:
        await connection.execute(
            update(Handoff).where(Handoff.id == handoff_id).values(claim_deadline=in_paris)
        )
    handoff = await store.get_handoff(handoff_id)
    assert handoff.claim_deadline.isoformat() == "2026-11-03T10:00:00+00:00"


async def test_the_ledger_csv_shows_aware_utc_times(
    store: ConversationStore, store_url: str, brand_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    conversation = await store.create_conversation("kestrel")
    handoff_id = await open_handoff(store, conversation.id)
    await register(store, "ana")
    await store.claim_handoff("kestrel", handoff_id, "ana", MINUTE)
    assert await store.resolve_handoff(handoff_id, "ana", Decimal("4.00")) is not None
    monkeypatch.setenv("GIGCX_STORE__URL", store_url)
    month = utcnow().strftime("%Y-%m")
    config = str(brand_dir / "gigcx.yaml")
    result = await asyncio.to_thread(
        gigcx, "ledger", "export", "--month", month, "--detail", "--config", config
    )
    assert result.exit_code == 0, result.output
    [row] = list(csv.DictReader(io.StringIO(result.stdout)))
    assert row["claimed_at"].endswith("+00:00") and row["resolved_at"].endswith("+00:00")
    assert datetime.fromisoformat(row["resolved_at"]) >= datetime.fromisoformat(row["claimed_at"])


async def test_a_handoff_routed_to_staff_is_claimed_by_staff_only(store: ConversationStore):
    """Account and billing questions go to the brand's staff: a gig expert can neither claim
    one nor take back one they moved to staff (and be paid for it)."""
    conversation = await store.create_conversation("kestrel")
    handoff_id = await open_handoff(store, conversation.id)
    await store.sync_experts(
        "kestrel",
        [
            Expert(key="gig", name="Gig", tier="gig", capacity=3, active=True),
            Expert(key="desk", name="Desk", tier="staff", capacity=3, active=True),
        ],
    )
    assert await store.claim_handoff("kestrel", handoff_id, "gig", MINUTE) is not None
    assert await store.release_handoff(handoff_id, "gig", MINUTE, to_staff=True) is not None
    with pytest.raises(ClaimerNotEligible) as refused:
        await store.claim_handoff("kestrel", handoff_id, "gig", MINUTE)
    assert refused.value.reason == "not_staff"
    claimed = await store.claim_handoff("kestrel", handoff_id, "desk", MINUTE)
    assert claimed is not None and claimed.assignee == "desk"


async def test_messages_written_together_are_all_kept_in_order_and_one_bad_write_fails_alone(
    store: ConversationStore, store_url: str
):
    """Many customers writing at once (SQLite shares one transaction among them): every
    acknowledged message is in the store after it is reopened, numbered without gaps, and a
    write to a conversation that does not exist fails on its own."""
    busy = await store.create_conversation("kestrel")
    others = [await store.create_conversation("kestrel") for _ in range(20)]

    async def write(n: int) -> object:
        if n == 37:
            return await store.add_message("f" * 32, "customer", "to nobody")
        target = busy.id if n % 2 else others[n % 20].id
        return await store.add_message(target, "customer", f"message {n}")

    outcomes = await asyncio.gather(*(write(n) for n in range(200)), return_exceptions=True)
    failed = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, Exception)]
    assert failed == [37]
    assert isinstance(outcomes[37], ConversationNotFound)

    reopened = create_engine(StoreSettings(url=store_url))
    try:
        again = ConversationStore(reopened)
        busy_messages = await again.messages_after(busy.id)
        assert [m.seq for m in busy_messages] == list(range(1, 100))
        assert sorted(m.text for m in busy_messages) == sorted(
            f"message {n}" for n in range(1, 200, 2) if n != 37
        )
        kept = [len(await again.messages_after(c.id)) for c in others]
        assert sum(kept) == 100
    finally:
        await reopened.dispose()


async def test_sqlite_waits_for_the_disk_on_every_commit(tmp_path: Path):
    """An acknowledged message must survive a power cut: WAL with synchronous=FULL (2)."""
    engine = create_engine(StoreSettings(url=f"sqlite:///{tmp_path / 'gigcx.db'}"))
    try:
        async with engine.connect() as connection:
            mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
            synchronous = (await connection.exec_driver_sql("PRAGMA synchronous")).scalar()
        assert (mode, synchronous) == ("wal", 2)
    finally:
        await engine.dispose()


async def test_a_pooled_postgresql_connection_killed_while_idle_is_replaced_unseen(
    monkeypatch: pytest.MonkeyPatch,
):
    """A database restart leaves dead connections in the pool: one that sat idle is checked
    before use and replaced, so the next request does not fail."""
    monkeypatch.setattr("gigcx.store.database.PING_AFTER_IDLE_SECONDS", 0.0)
    async with postgres_database() as url:
        engine = create_engine(StoreSettings(url=url))
        try:
            await upgrade_database(engine)
            store = ConversationStore(engine)
            conversation = await store.create_conversation("kestrel")
            database = url.rsplit("/", 1)[-1]
            admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
            try:  # every connection the pool holds dies, as in a restart
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = $1 AND pid <> pg_backend_pid()",
                    database,
                )
            finally:
                await admin.close()
            assert killed >= 1
            found = await store.find_conversation(conversation.id)
            assert found is not None and found.id == conversation.id
        finally:
            await engine.dispose()
