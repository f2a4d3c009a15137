"""The overview a brand team reads, on SQLite and PostgreSQL: a week of conversations the
bot answered, clarified and escalated, people who claimed, replied and resolved, and how
customers rated both; the same numbers from `gigcx report` as Markdown, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from gigcx.config import Settings, StoreSettings
from gigcx.insights.report import (
    Period,
    conversation_rows,
    experts_report,
    human_duration,
    overview,
)
from gigcx.store import ConversationStore
from gigcx.store.models import Expert, utcnow

BRAND = "kestrel"
BIN = Path(sys.executable).parent


def decision(action: str, reason: str | None = None, route: str | None = None) -> dict:
    return {
        "decision": {
            "action": action,
            "reason": reason,
            "route": route,
            "confidence": 0.8,
            "query": "how do I pair my x2",
            "product": "x2",
            "passages": [
                {
                    "title": "Pairing",
                    "section": "Steps",
                    "path": "x2/pairing.md",
                    "score": 0.71,
                    "product": "x2",
                }
            ],
            "evidence": {"dense": 0.71},
        }
    }


async def answered(store: ConversationStore, helpful: bool | None) -> str:
    conversation = await store.create_conversation(BRAND)
    await store.add_message(conversation.id, "customer", "how do I pair my x2")
    reply = await store.add_message(
        conversation.id, "bot", "Hold the button.", meta=decision("answer")
    )
    assert reply is not None
    if helpful is not None:
        assert await store.rate_answer(conversation.id, reply.seq, helpful)
    return conversation.id


async def escalated(
    store: ConversationStore, reason: str, route: str, person: str | None, csat: int | None
) -> str:
    conversation = await store.create_conversation(BRAND)
    await store.add_message(conversation.id, "customer", "<b>where</b> is my order 1234?")
    opened = await store.open_handoff(
        conversation.id,
        reason=reason,
        route=route,  # type: ignore[arg-type]
        tags=[],
        packet={},
        notice="Passing you to a person.",
        notice_meta=decision("escalate", reason, route),
        claim_timeout=timedelta(minutes=5),
    )
    assert opened is not None
    handoff, _ = opened
    if person is not None:
        assert await store.claim_handoff(BRAND, handoff.id, person, timedelta(hours=1))
        await store.add_message(
            conversation.id, "expert" if route == "expert" else "staff", "On it"
        )
        resolved = await store.resolve_handoff(handoff.id, person, Decimal("4.50"), "EUR")
        assert resolved is not None
        if csat is not None:
            assert await store.record_csat(resolved, csat, "") is not None
    return conversation.id


async def seed(store: ConversationStore) -> dict[str, str]:
    await store.sync_experts(
        BRAND,
        [
            Expert(key="alex", name="Alex", tier="gig", capacity=3, active=True),
            Expert(key="jordan", name="Jordan", tier="staff", capacity=3, active=True),
            Expert(key="kim", name="Kim", tier="gig", capacity=3, active=True),
        ],
    )
    ids = {
        "up": await answered(store, True),
        "down": await answered(store, False),
        "unrated": await answered(store, None),
    }
    clarified = await store.create_conversation(BRAND)
    await store.add_message(clarified.id, "customer", "it won't pair")
    await store.add_message(clarified.id, "bot", "Which one?", meta=decision("clarify"))
    ids["clarified"] = clarified.id
    ids["expert"] = await escalated(store, "expert_needed", "expert", "alex", 5)
    ids["staff"] = await escalated(store, "staff_topic", "staff", "jordan", 2)
    ids["waiting"] = await escalated(store, "human_requested", "expert", None, None)
    ids["silent"] = (await store.create_conversation(BRAND)).id
    await store.create_conversation("another-brand")  # never counted
    return ids


async def test_the_overview_counts_what_happened(store: ConversationStore) -> None:
    await seed(store)
    period = Period.last_days(7)
    report = await overview(store, BRAND, period)
    assert report.conversations == 8
    assert report.bot_answers == 3
    assert report.contained == 3
    assert report.clarified == 1
    assert report.escalated == 3
    assert dict(report.by_reason) == {"expert_needed": 1, "staff_topic": 1, "human_requested": 1}
    assert report.by_route == (("expert", 2), ("staff", 1))
    assert report.time_to_claim.count == 2 and report.time_to_claim.p50 is not None
    assert report.time_to_first_reply.count == 2
    assert report.resolution_time.count == 2
    assert (report.csat_bot.rated, report.csat_bot.satisfied, report.csat_bot.share) == (2, 1, 0.5)
    assert (report.csat_expert.rated, report.csat_expert.average) == (1, 5.0)
    assert (report.csat_staff.rated, report.csat_staff.satisfied) == (1, 0)
    assert len(report.days) == 7
    today = report.days[-1]
    assert today.day == utcnow().date()
    assert (today.conversations, today.bot_answers, today.escalated) == (8, 3, 3)
    assert sum(d.conversations for d in report.days[:-1]) == 0
    # A period that ended before today holds nothing.
    earlier = Period(period.since - timedelta(days=30), period.since, "before")
    assert (await overview(store, BRAND, earlier)).conversations == 0


async def test_experts_and_conversations(store: ConversationStore) -> None:
    ids = await seed(store)
    period = Period.last_days(30)
    rows = {row.key: row for row in await experts_report(store, BRAND, period)}
    assert rows["alex"].resolutions == 1 and rows["alex"].payout == Decimal("4.50")
    assert rows["alex"].csat.average == 5.0 and rows["alex"].available
    assert rows["kim"].resolutions == 0 and rows["kim"].currency == ""
    listed = await conversation_rows(store, BRAND, period)
    outcomes = {row.id: row.outcome for row in listed}
    assert outcomes[ids["up"]] == "answered"
    assert outcomes[ids["clarified"]] == "clarified"
    assert outcomes[ids["expert"]] == "escalated"
    assert outcomes[ids["silent"]] == "no reply"
    escalated_only = await conversation_rows(store, BRAND, period, outcome="escalated")
    assert {row.id for row in escalated_only} == {ids["expert"], ids["staff"], ids["waiting"]}
    assert {row.first_question for row in escalated_only} == {"<b>where</b> is my order 1234?"}
    page = await conversation_rows(store, BRAND, period, limit=3)
    rest = await conversation_rows(store, BRAND, period, before=page[-1].created_at)
    assert len(page) == 3 and not {r.id for r in page} & {r.id for r in rest}


def test_periods_and_durations_read_as_people_write_them() -> None:
    november = Period.month("2026-11")
    assert november.label == "November 2026" and len(november.days()) == 30
    for bad in ("2026-13", "Nov", "2026-1"):
        try:
            Period.month(bad)
        except ValueError as error:
            assert repr(bad) in str(error)
        else:
            raise AssertionError(bad)
    assert [human_duration(s) for s in (None, 42, 240, 4800, 93600)] == [
        "-",
        "42 s",
        "4 min",
        "1 h 20 min",
        "1 d 2 h",
    ]


async def test_gigcx_report_prints_the_month(brand_settings: Settings, tmp_path: Path) -> None:
    from gigcx.store import create_engine, upgrade_database

    engine = create_engine(brand_settings.store)
    await upgrade_database(engine)
    await seed(ConversationStore(engine))
    await engine.dispose()
    config = tmp_path / "gigcx.yaml"
    source = (brand_settings.knowledge.path.parent / "gigcx.yaml").read_text()
    config.write_text(
        source.replace("sqlite:///.gigcx/gigcx.db", brand_settings.store.url).replace(
            "path: knowledge", f"path: {brand_settings.knowledge.path}"
        )
    )
    month = f"{utcnow():%Y-%m}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "gigcx"), "report", "--config", str(config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    markdown = run("--month", month)
    assert markdown.returncode == 0, markdown.stderr
    assert "| Conversations | 8 |" in markdown.stdout
    assert "| expert_needed | 1 |" in markdown.stdout
    data = json.loads(run("--month", month, "--format", "json").stdout)
    assert data["escalated"] == 3 and data["csat_bot"]["share"] == 0.5
    rows = list(csv.DictReader(io.StringIO(run("--month", month, "--format", "csv").stdout)))
    assert rows[-1]["day"] == "total" and rows[-1]["conversations"] == "8"
    bad = run("--month", "2026-13")
    assert bad.returncode == 2 and "2026-13" in bad.stderr


async def test_a_store_from_before_0010_gets_trails_and_first_replies(store_url: str) -> None:
    """Upgrading keeps history readable: earlier bot turns become trail rows (from the
    decision kept with each message), earlier handoffs get their first person's reply."""
    from alembic import command
    from sqlalchemy import text

    from gigcx.store import create_engine, upgrade_database
    from gigcx.store.database import _alembic_config
    from gigcx.store.models import as_utc

    engine = create_engine(StoreSettings(url=store_url))
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: command.upgrade(_alembic_config(sync), "0009"))
    at = utcnow() - timedelta(hours=2)
    rows = {
        "conversations": "INSERT INTO conversations (id, brand, customer_id, token_hash, "
        "customer_attributes, state, last_seq, created_at, updated_at) VALUES "
        "(:cid, 'kestrel', 'anon', '', '{}', 'resolved', 3, :at, :at)",
        "messages": "INSERT INTO messages (conversation_id, seq, author, text, citations, meta, "
        "created_at) VALUES (:cid, 2, 'bot', 'Passing you on', '[]', "
        '\'{"decision": {"action": "escalate", "reason": "expert_needed", '
        '"route": "expert", "confidence": 0.3, "query": "x2 sidetone?"}}\', :at)',
        "reply": "INSERT INTO messages (conversation_id, seq, author, text, citations, meta, "
        "created_at) VALUES (:cid, 3, 'expert', 'Yes', '[]', '{}', :later)",
        "handoffs": "INSERT INTO handoffs (id, conversation_id, reason, route, tags, packet, "
        "state, offers, claim_deadline, created_at, closed_at) VALUES (:hid, "
        ":cid, 'expert_needed', 'expert', '[]', '{}', 'resolved', 1, :at, "
        ":at, :end)",
    }
    async with engine.begin() as connection:
        for sql in rows.values():
            await connection.execute(
                text(sql),
                {
                    "cid": "c" + "0" * 31,
                    "hid": "d" + "0" * 31,
                    **{
                        # SQLite keeps UTC wall times without a zone (what the store writes)
                        name: moment if "postgresql" in store_url else moment.replace(tzinfo=None)
                        for name, moment in {
                            "at": at,
                            "later": at + timedelta(minutes=3),
                            "end": at + timedelta(minutes=9),
                        }.items()
                    },
                },
            )
    await upgrade_database(engine)
    store = ConversationStore(engine)
    [trail] = await store.decision_trails("c" + "0" * 31)
    assert (trail.action, trail.reason, trail.query, trail.passages) == (
        "escalate",
        "expert_needed",
        "x2 sidetone?",
        [],
    )
    handoff = await store.get_handoff("d" + "0" * 31)
    assert handoff.first_reply_at is not None
    assert as_utc(handoff.first_reply_at) == at + timedelta(minutes=3)
    report = await overview(store, BRAND, Period.last_days(1))
    assert report.time_to_first_reply.p50 == 180.0
    await engine.dispose()
