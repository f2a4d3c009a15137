"""The expert registry, capacity, the pay-per-resolution ledger and claim-timeout sweeps."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from gigcx.app import GigCX, start
from gigcx.config import Settings, load_settings
from gigcx.escalation import ClaimRefused
from gigcx.escalation.roster import ExpertsFileError, read_experts_file, sync_experts
from gigcx.store import Handoff
from gigcx.store.models import utcnow
from tests.helpers.experts import ALEX, JORDAN, SAMI, register_experts
from tests.test_cli import gigcx


async def waiting_handoff(runtime: GigCX, text: str = "can I talk to a person?") -> str:
    conversation = await runtime.front_line.start_conversation()
    await runtime.front_line.handle_customer_message(conversation.id, text)
    handoff = await runtime.store.open_handoff_for(conversation.id)
    assert handoff is not None
    return handoff.id


@pytest.fixture
async def registered(gigcx_runtime: GigCX) -> GigCX:
    await register_experts(gigcx_runtime)
    return gigcx_runtime


async def test_sync_adds_updates_and_deactivates_but_keeps_availability(
    gigcx_runtime: GigCX, tmp_path: Path
):
    store, brand = gigcx_runtime.store, gigcx_runtime.settings.brand
    source = gigcx_runtime.settings.escalation.experts_file
    first = await sync_experts(store, brand, source)
    assert sorted(first["added"]) == sorted([ALEX, SAMI, JORDAN])
    assert await sync_experts(store, brand, source) == {
        "added": [],
        "updated": [],
        "deactivated": [],
    }
    await store.set_available(brand, ALEX, False)
    edited = tmp_path / "experts.yaml"
    edited.write_text(
        source.read_text()
        .replace("capacity: 3", "capacity: 5")
        .split("- slack_user_id: U04JORDN")[0]
    )
    second = await sync_experts(store, brand, edited)
    assert second == {"added": [], "updated": [ALEX], "deactivated": [JORDAN]}
    alex = await store.find_expert(brand, ALEX)
    assert alex is not None and (alex.capacity, alex.available) == (5, False)
    jordan = await store.find_expert(brand, JORDAN)
    assert jordan is not None and not jordan.active


async def test_nobody_available_counts_the_active_experts_of_the_route(
    gigcx_runtime: GigCX, tmp_path: Path
):
    store, brand = gigcx_runtime.store, gigcx_runtime.settings.brand
    escalations = gigcx_runtime.escalations
    # No registry yet: the route may be staffed another way, so nobody is judged missing.
    assert await store.availability(brand, "gig") == (0, 0)
    assert not await escalations.nobody_available("expert")
    await sync_experts(store, brand, gigcx_runtime.settings.escalation.experts_file)
    assert await store.availability(brand, "gig") == (2, 2)  # Alex and Sami
    assert await store.availability(brand, "staff") == (1, 1)  # Jordan
    await store.set_available(brand, ALEX, False)
    assert await store.availability(brand, "gig") == (2, 1)
    assert not await escalations.nobody_available("expert")
    await store.set_available(brand, SAMI, False)
    assert await escalations.nobody_available("expert")
    assert not await escalations.nobody_available("staff")
    assert await store.availability("another-brand", "gig") == (0, 0)
    # Jordan leaves the file: an inactive expert is not counted at all.
    source = gigcx_runtime.settings.escalation.experts_file
    edited = tmp_path / "experts.yaml"
    edited.write_text(source.read_text().split("- slack_user_id: U04JORDN")[0])
    await sync_experts(store, brand, edited)
    assert await store.availability(brand, "staff") == (0, 0)
    assert not await escalations.nobody_available("staff")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- slack_user_id: alex\n  name: Alex\n",
            ":1: expert 1: slack_user_id: 'alex' is not in the expected format",
        ),
        ("- slack_user_id: U1AB\n", ":1: expert 1: name: is required"),
        (
            "- {slack_user_id: U1AB, name: A}\n- slack_user_id: U1CD\n  name: B\n  tier: boss\n",
            ":2: expert 2: tier: 'boss' is not allowed; use one of: 'gig' or 'staff'",
        ),
        (
            "- {slack_user_id: U1AB, name: A}\n- {slack_user_id: U1AB, name: B}\n",
            "already expert 1",
        ),
        ("- {slack_user_id: U1AB, name: A, capacity: 0}\n", "capacity: Input should be greater"),
        ("- {slack_user_id: U1AB, name: A, pay: 5}\n", "pay: is not a known field"),
        ("slack_user_id: U1AB\n", "expected a list of experts"),
        ("- [unclosed\n", "invalid YAML"),
    ],
)
def test_a_bad_experts_file_names_the_line_and_field(tmp_path: Path, text: str, message: str):
    path = tmp_path / "experts.yaml"
    path.write_text(text)
    with pytest.raises(ExpertsFileError) as error:
        read_experts_file(path)
    assert str(path) in str(error.value) and message in str(error.value)


async def test_unregistered_inactive_or_full_experts_may_not_claim(registered: GigCX):
    escalations, store = registered.escalations, registered.store
    handoff_id = await waiting_handoff(registered)
    with pytest.raises(ClaimRefused, match="not registered as an expert for Kestrel Audio"):
        await escalations.claim(handoff_id, "U0STRANGER")
    for _ in range(2):  # Sami's capacity is 2
        assert await escalations.claim(await waiting_handoff(registered), SAMI) is not None
    with pytest.raises(ClaimRefused, match=r"already have 2 open conversations \(your capacity\)"):
        await escalations.claim(handoff_id, SAMI)
    handoff = await store.get_handoff(handoff_id)
    assert (handoff.state, handoff.assignee) == ("waiting", None)
    # experts.yaml is emptied: Jordan, staff, is deactivated and may no longer claim.
    await store.sync_experts("kestrel", [])
    with pytest.raises(ClaimRefused, match="not registered"):
        await escalations.claim(handoff_id, JORDAN)
    conversation = await store.get_conversation(handoff.conversation_id)
    assert conversation.state == "waiting"


@pytest.fixture
async def on_each_store(synced_brand: Path, store_url: str) -> AsyncIterator[GigCX]:
    """The example brand with its experts registered, on SQLite and on PostgreSQL."""
    runtime = await start(load_settings(synced_brand / "gigcx.yaml", store={"url": store_url}))
    await register_experts(runtime)
    yield runtime
    await runtime.close()


async def test_eight_simultaneous_claims_by_an_expert_of_capacity_two_give_them_two(
    on_each_store: GigCX,
):
    runtime = on_each_store
    handoffs = [await waiting_handoff(runtime) for _ in range(8)]
    results = await asyncio.gather(
        *(runtime.escalations.claim(handoff_id, SAMI) for handoff_id in handoffs),
        return_exceptions=True,
    )
    claimed = [r for r in results if isinstance(r, Handoff)]
    refused = [str(r) for r in results if isinstance(r, ClaimRefused)]
    assert len(claimed) == 2
    assert refused == ["you already have 2 open conversations (your capacity)"] * 6
    held = [await runtime.store.get_handoff(handoff_id) for handoff_id in handoffs]
    assert (
        sorted((h.state, h.assignee) for h in held)
        == [("assigned", SAMI)] * 2 + [("waiting", None)] * 6
    )
    customers = [await runtime.store.get_conversation(h.conversation_id) for h in held]
    assert sorted(c.state for c in customers) == ["assigned"] * 2 + ["waiting"] * 6


async def test_a_resolution_is_paid_once_and_gets_its_csat(registered: GigCX):
    escalations, store = registered.escalations, registered.store
    handoff_id = await waiting_handoff(registered)
    await escalations.claim(handoff_id, ALEX, "Alex")
    resolved = await escalations.resolve(handoff_id, ALEX)
    assert resolved is not None
    conversation_id = resolved.conversation_id
    await escalations.rate(conversation_id, 5, "great")
    # The customer comes back; the conversation is resolved again by someone else.
    await registered.front_line.request_person(conversation_id)
    again = await store.open_handoff_for(conversation_id)
    assert again is not None
    await escalations.claim(again.id, SAMI)
    await escalations.resolve(again.id, SAMI)
    start, end = utcnow() - timedelta(days=40), utcnow() + timedelta(days=1)
    [entry] = await store.ledger("kestrel", start, end)
    assert (entry.expert, str(entry.payout), entry.currency, entry.csat) == (ALEX, "4.00", "EUR", 5)
    assert entry.handle_seconds >= 0


async def test_staff_resolutions_are_recorded_unpaid(registered: GigCX):
    handoff_id = await waiting_handoff(registered, "I was charged twice for my X2")
    await registered.escalations.claim(handoff_id, JORDAN)
    await registered.escalations.resolve(handoff_id, JORDAN)
    start, end = utcnow() - timedelta(days=1), utcnow() + timedelta(days=1)
    [entry] = await registered.store.ledger("kestrel", start, end)
    assert (entry.expert, str(entry.payout)) == (JORDAN, "0.00")


def test_ledger_export_says_what_each_expert_is_owed(
    brand_settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    async def two_resolutions_by_alex() -> None:
        runtime = await start(brand_settings)
        try:
            settings = runtime.settings
            await sync_experts(runtime.store, settings.brand, settings.escalation.experts_file)
            for _ in range(2):
                handoff_id = await waiting_handoff(runtime)
                await runtime.escalations.claim(handoff_id, ALEX)
                await runtime.escalations.resolve(handoff_id, ALEX)
        finally:
            await runtime.close()

    asyncio.run(two_resolutions_by_alex())
    config = str(brand_settings.knowledge.path.parent / "gigcx.yaml")
    month = utcnow().strftime("%Y-%m")
    monkeypatch.setenv("GIGCX_STORE__URL", brand_settings.store.url)
    result = gigcx("ledger", "export", "--month", month, "--config", config)
    assert result.exit_code == 0, result.output
    [row] = list(csv.DictReader(io.StringIO(result.stdout)))
    assert (row["expert"], row["name"], row["resolutions"], row["payout"]) == (
        ALEX,
        "Alex Moreau",
        "2",
        "8.00",
    )
    bad = gigcx("ledger", "export", "--month", "2026-13", "--config", config)
    assert bad.exit_code == 2 and "use YYYY-MM" in bad.stderr


async def test_unclaimed_handoffs_are_reoffered_then_moved_to_staff_even_after_a_restart(
    brand_settings: Settings,
):
    runtime = await start(brand_settings)
    handoff_id = await waiting_handoff(runtime)
    await runtime.close()  # the server restarts before the deadline

    runtime = await start(brand_settings)
    try:
        escalations = runtime.escalations
        now = utcnow()
        assert await escalations.sweep(now) == []  # not due yet
        later = now + timedelta(seconds=301)
        # Two server processes sweep at the same moment: one re-offer.
        results = await asyncio.gather(escalations.sweep(later), escalations.sweep(later))
        assert sum(len(r) for r in results) == 1
        handoff = await runtime.store.get_handoff(handoff_id)
        assert (handoff.offers, handoff.route, handoff.state) == (2, "expert", "waiting")
        [moved] = await escalations.sweep(now + timedelta(seconds=901))
        assert (moved.id, moved.route, moved.offers) == (handoff_id, "staff", 3)
    finally:
        await runtime.close()


async def test_an_expert_given_an_id_keeps_their_handoffs_ledger_and_notes(
    registered: GigCX, tmp_path: Path
):
    """A brand moves its experts file to ids: Alex's entry, which had only a Slack id (the
    id derived from it), gains `id: alex`. Alex is the same person: the handoff Alex holds
    stays Alex's, and the ledger names Alex once, under the new id."""
    escalations, store, brand = registered.escalations, registered.store, "kestrel"
    paid = await waiting_handoff(registered)
    await escalations.claim(paid, ALEX, "Alex")
    await escalations.resolve(paid, ALEX)
    held = await waiting_handoff(registered, "I need a person for my X2, please")
    await escalations.claim(held, ALEX, "Alex")

    source = registered.settings.escalation.experts_file
    moved = tmp_path / "experts.yaml"
    moved.write_text(
        source.read_text().replace(
            "- slack_user_id: U04ALEXM\n", "- id: alex\n  handles: {slack: U04ALEXM}\n"
        )
    )
    report = await sync_experts(store, brand, moved)
    assert report["deactivated"] == [], "nobody left: Alex only got an id"
    alex = await store.find_expert_by_handle(brand, "slack", ALEX)
    assert alex is not None and alex.key == "alex" and alex.active
    assert (await store.get_handoff(held)).assignee == "alex", "Alex still holds it"
    start, end = utcnow() - timedelta(days=1), utcnow() + timedelta(days=1)
    assert [entry.expert for entry in await store.ledger(brand, start, end)] == ["alex"]
    # Alex, known by the Slack id, still answers the customer on the held handoff.
    assert await escalations.send_reply(held, "alex", "Hi, Alex here.") is not None
    assert await sync_experts(store, brand, moved) == {
        "added": [],
        "updated": [],
        "deactivated": [],
    }
