"""E-mail replies, as the customer who left an address lives them: an expert's reply they
have not read reaches them by e-mail (a real local SMTP server receives it), with a signed
link back to the conversation, and their reply by e-mail comes back into it."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from gigcx import events
from gigcx.app import GigCX, start
from gigcx.config import ConfigError, Settings, load_settings
from gigcx.connectors.email import CONSUMER, EmailChannel, deliver_due
from gigcx.connectors.email.inbound import reply_text
from gigcx.connectors.email.links import BadLink, ExpiredLink, LinkSigner
from gigcx.connectors.web import create_app
from gigcx.store import Handoff
from gigcx.store.models import OutboxItem, utcnow
from tests.helpers.experts import ALEX, register_experts
from tests.helpers.live_server import free_port

CUSTOMER = "Robin.Customer@Example.org"
SIGNING_KEY = "mailgun-signing-key-for-tests"
LINK_SECRET = "a-long-random-link-secret-for-tests"
DELAY = 120


# ------------------------------------------------------------------ a real SMTP server


@dataclass
class Inbox:
    """What the local SMTP server received; `refuse` makes it answer RCPT with that line."""

    received: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    refuse: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse is not None:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted"


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def inbox(smtp_port: int) -> Iterator[Inbox]:
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    yield box
    controller.stop()


def email_settings(base: Settings, smtp_port: int, **overrides: object) -> Settings:
    email = {
        "enabled": True,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_starttls": False,
        "smtp_timeout_seconds": 3,
        "from_address": "help@kestrel.example",
        "reply_domain": "reply.kestrel.example",
        "inbound_signing_key": SIGNING_KEY,
        "link_secret": LINK_SECRET,
        "public_base_url": "https://help.kestrel.example",
        "send_delay_seconds": DELAY,
        **overrides,
    }
    return base.model_copy(update={"email": type(base.email).model_validate(email)})


@pytest.fixture
async def runtime(brand_settings: Settings, smtp_port: int) -> AsyncIterator[GigCX]:
    started = await start(email_settings(brand_settings, smtp_port))
    await register_experts(started)
    yield started
    await started.close()


@pytest.fixture
def channel(runtime: GigCX) -> EmailChannel:
    return EmailChannel(runtime)


async def outbox(runtime: GigCX) -> list[OutboxItem]:
    async with runtime.store._sessions() as session:
        return list(await session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


async def waiting_for_alex(runtime: GigCX, email: str | None = CUSTOMER) -> tuple[str, Handoff]:
    """A customer waiting for a person, who left `email`; Alex has claimed the handoff."""
    store = runtime.store
    conversation = await store.create_conversation(runtime.settings.brand, attributes={})
    await store.add_message(conversation.id, "customer", "my X2 won't pair")
    opened = await store.open_handoff(
        conversation.id,
        reason="human_requested",
        route="expert",
        tags=["product:x2"],
        packet={},
        notice="A product expert will reply here.",
        notice_meta={},
        claim_timeout=timedelta(minutes=5),
    )
    assert opened is not None
    if email is not None:
        await runtime.escalations.leave_contact(conversation.id, email)
    handoff = await runtime.escalations.claim(opened[0].id, ALEX, display_name="Alex")
    assert handoff is not None
    return conversation.id, handoff


async def alex_says(runtime: GigCX, handoff: Handoff, text: str) -> OutboxItem:
    message = await runtime.escalations.send_reply(handoff.id, ALEX, text)
    assert message is not None
    rows = [row for row in await outbox(runtime) if row.message_id == message.id]
    assert [(row.consumer, row.kind) for row in rows] == [(CONSUMER, "expert_message")], (
        "the store leaves one row for the e-mail channel"
    )
    return rows[0]


def later(seconds: float = DELAY + 1):
    return utcnow() + timedelta(seconds=seconds)


# ------------------------------------------------------------------ replies by e-mail


async def test_unread_replies_reach_the_customer_in_one_email_with_a_link_back(
    runtime: GigCX, channel: EmailChannel, inbox: Inbox
):
    conversation_id, handoff = await waiting_for_alex(runtime)
    await alex_says(runtime, handoff, "Hi, Alex here. Hold the button for 5 seconds.")
    await alex_says(runtime, handoff, "Then pick Kestrel X2 in your phone's Bluetooth list.")

    assert await deliver_due(channel) == 0, "within the delay the customer may still read it"
    assert inbox.received == []
    assert len(await outbox(runtime)) == 2, "both wait in the outbox"

    await deliver_due(channel, later())
    assert len(inbox.received) == 1, "several unread replies go in one e-mail"
    mail_from, recipients, mail = inbox.received[0]
    assert recipients == [CUSTOMER]
    assert mail_from == "help@kestrel.example"
    assert mail["From"].addresses[0].addr_spec == "help@kestrel.example"
    assert mail["Subject"] == "New reply from Kestrel Audio support"
    reply_to = str(mail["Reply-To"])
    assert reply_to.startswith(f"reply+{conversation_id}.")
    assert reply_to.endswith("@reply.kestrel.example")
    text_part = mail.get_body(("plain",)).get_content()
    html_part = mail.get_body(("html",)).get_content()
    assert "Alex, product expert replied to your question" in text_part
    assert "> Hi, Alex here. Hold the button for 5 seconds." in text_part
    assert "> Then pick Kestrel X2 in your phone's Bluetooth list." in text_part
    assert "Hold the button for 5 seconds." in html_part
    for part in (text_part, html_part, str(mail)):
        assert ALEX not in part, "never the expert's Slack id"
    link = next(line for line in text_part.splitlines() if "/email/open?resume_token=" in line)
    assert link.startswith("https://help.kestrel.example/email/open?resume_token=")
    assert conversation_id == channel.signer.open(link.split("=", 1)[1], utcnow())
    assert await outbox(runtime) == [], "both items done with, one e-mail"


async def test_a_reply_read_in_the_chat_is_not_emailed(
    runtime: GigCX, channel: EmailChannel, inbox: Inbox
):
    conversation_id, handoff = await waiting_for_alex(runtime)
    await alex_says(runtime, handoff, "Try resetting it.")
    conversation = await runtime.store.get_conversation(conversation_id)
    # The widget's read receipt, as POST /v1/conversations/{id}/read stores it.
    assert await runtime.store.mark_conversation(conversation_id, read_seq=conversation.last_seq)
    await deliver_due(channel, later())
    assert inbox.received == []
    assert await outbox(runtime) == []


async def test_no_email_without_an_address(runtime: GigCX, channel: EmailChannel, inbox: Inbox):
    _conversation_id, handoff = await waiting_for_alex(runtime, email=None)
    await alex_says(runtime, handoff, "Try resetting it.")
    await deliver_due(channel, later())
    assert inbox.received == []
    assert await outbox(runtime) == []


async def test_the_resolution_comes_with_the_unread_reply_and_alone_after_a_read_one(
    runtime: GigCX, channel: EmailChannel, inbox: Inbox
):
    _conversation_id, handoff = await waiting_for_alex(runtime)
    await alex_says(runtime, handoff, "Fixed in firmware 2.1; update and it pairs.")
    await runtime.escalations.resolve(handoff.id, ALEX)
    await deliver_due(channel, later())
    assert len(inbox.received) == 1, "one e-mail says both"
    text_part = inbox.received[0][2].get_body(("plain",)).get_content()
    assert "Fixed in firmware 2.1" in text_part
    assert "Alex, product expert marked your question as resolved." in text_part

    # Another conversation: the reply was read, the resolution was not.
    other_id, other = await waiting_for_alex(runtime, email="sam@example.org")
    await alex_says(runtime, other, "Done, check now.")
    read = await runtime.store.get_conversation(other_id)
    await runtime.store.mark_conversation(other_id, read_seq=read.last_seq)
    await runtime.escalations.resolve(other.id, ALEX)
    await deliver_due(channel, later())
    assert len(inbox.received) == 2
    _from, to, mail = inbox.received[1]
    assert to == ["sam@example.org"]
    assert mail["Subject"] == "Your conversation with Kestrel Audio is resolved"
    assert "Done, check now." not in mail.get_body(("plain",)).get_content(), "read already"


async def test_an_smtp_outage_keeps_the_reply_until_the_server_is_back(
    runtime: GigCX, smtp_port: int, caplog: pytest.LogCaptureFixture
):
    channel = EmailChannel(runtime)  # nothing listens on smtp_port yet
    _conversation_id, handoff = await waiting_for_alex(runtime)
    await alex_says(runtime, handoff, "Here is the fix.")
    with caplog.at_level(logging.ERROR):
        assert await deliver_due(channel, later()) == 0
    [kept] = await outbox(runtime)
    assert "could not reach the SMTP server" in kept.last_error
    assert kept.due_at > utcnow(), "tried again later, with backoff"
    assert "will try again" in caplog.text
    assert CUSTOMER.lower() not in caplog.text.lower()

    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        await deliver_due(channel, later(DELAY + 3600))
    finally:
        controller.stop()
    assert len(box.received) == 1
    assert "Here is the fix." in box.received[0][2].get_body(("plain",)).get_content()
    assert await outbox(runtime) == []


async def test_a_refused_address_is_given_up_and_logged_without_it(
    runtime: GigCX, channel: EmailChannel, inbox: Inbox, caplog: pytest.LogCaptureFixture
):
    inbox.refuse = f"550 5.1.1 <{CUSTOMER}>: mailbox unknown"
    _conversation_id, handoff = await waiting_for_alex(runtime)
    await alex_says(runtime, handoff, "Here is the fix.")
    with caplog.at_level(logging.ERROR):
        await deliver_due(channel, later())
    assert inbox.received == []
    assert await outbox(runtime) == [], "given up: it would block the handoff's later items"
    assert "given up, not sent" in caplog.text
    assert "550" in caplog.text
    assert CUSTOMER.lower() not in caplog.text.lower()


async def test_a_4xx_is_tried_again(runtime: GigCX, channel: EmailChannel, inbox: Inbox):
    inbox.refuse = "451 4.3.0 try again later"
    _conversation_id, handoff = await waiting_for_alex(runtime)
    await alex_says(runtime, handoff, "Here is the fix.")
    await deliver_due(channel, later())
    [kept] = await outbox(runtime)
    assert "451" in kept.last_error
    inbox.refuse = None
    await deliver_due(channel, later(DELAY + 3600))
    assert len(inbox.received) == 1


async def test_a_lost_lease_settles_nothing(runtime: GigCX, channel: EmailChannel, inbox: Inbox):
    _conversation_id, handoff = await waiting_for_alex(runtime)
    await alex_says(runtime, handoff, "Here is the fix.")
    store = runtime.store
    now = later()
    [mine] = await store.take_outbox(CONSUMER, now, timedelta(seconds=1))
    [theirs] = await store.take_outbox(CONSUMER, now + timedelta(seconds=5), timedelta(minutes=5))
    assert mine.id == theirs.id
    assert await channel.settle(mine, now) is False, "sent, but the item is no longer ours"
    assert len(await outbox(runtime)) == 1, "the process holding it now settles it"
    assert await channel.settle(theirs, now) is True
    assert await outbox(runtime) == []


# ------------------------------------------------------------------ links


def test_links_are_signed_and_expire():
    signer = LinkSigner(LINK_SECRET.encode())
    conversation_id = "0123456789abcdef0123456789abcdef"
    link = signer.link(conversation_id, utcnow() + timedelta(days=7))
    assert signer.open(link, utcnow()) == conversation_id
    payload, signature = link.split(".")
    tampered = ("A" if payload[0] != "A" else "B") + payload[1:] + "." + signature
    with pytest.raises(BadLink):
        signer.open(tampered, utcnow())
    with pytest.raises(BadLink):
        LinkSigner(b"another secret of the same length").open(link, utcnow())
    with pytest.raises(ExpiredLink):
        signer.open(link, utcnow() + timedelta(days=8))
    address = f"{signer.reply_local_part(conversation_id)}@reply.kestrel.example"
    assert signer.conversation_of_reply(address) == conversation_id
    other = "f" * 32
    forged = address.replace(conversation_id, other)
    assert signer.conversation_of_reply(forged) is None


@pytest.fixture
async def api(runtime: GigCX, channel: EmailChannel) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime.settings, runtime)
    app.include_router(channel.router)  # what the web server does for an enabled channel
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_a_link_opens_the_chat_page_and_gives_the_browser_a_token_of_its_own(
    runtime: GigCX, channel: EmailChannel, api: httpx.AsyncClient
):
    conversation_id, _handoff = await waiting_for_alex(runtime)
    link = channel.signer.link(conversation_id, utcnow() + timedelta(days=7))
    opened = await api.get("/email/open", params={"resume_token": link})
    assert opened.status_code == 303
    assert opened.headers["location"] == f"https://help.kestrel.example/demo#gigcx-resume={link}"

    resumed = await api.post("/email/resume", json={"link": link})
    assert resumed.status_code == 200
    token = resumed.json()["token"]
    assert resumed.json()["conversation_id"] == conversation_id
    read = await api.get(
        f"/v1/conversations/{conversation_id}/messages",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert read.status_code == 200
    assert next(m["text"] for m in read.json()["messages"]) == "my X2 won't pair"


async def test_a_tampered_or_expired_link_is_refused_with_a_clear_page(
    runtime: GigCX, channel: EmailChannel, api: httpx.AsyncClient
):
    conversation_id, _handoff = await waiting_for_alex(runtime)
    link = channel.signer.link(conversation_id, utcnow() + timedelta(days=7))
    tampered = link[:-2] + ("AA" if not link.endswith("AA") else "BB")
    page = await api.get("/email/open", params={"resume_token": tampered})
    assert page.status_code == 403
    assert "<h1>This link is not valid</h1>" in page.text
    refused = await api.post("/email/resume", json={"link": tampered})
    assert refused.status_code == 403

    expired = channel.signer.link(conversation_id, utcnow() - timedelta(seconds=1))
    page = await api.get("/email/open", params={"resume_token": expired})
    assert page.status_code == 410
    assert "<h1>This link has expired</h1>" in page.text
    assert (await api.post("/email/resume", json={"link": expired})).status_code == 410


async def test_the_widget_read_receipt_is_stored(runtime: GigCX, api: httpx.AsyncClient):
    started = await api.post(
        "/v1/brands/kestrel/conversations", json={"widget_key": "kestrel-demo-widget-key"}
    )
    conversation_id, token = started.json()["conversation_id"], started.json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    await api.post(
        f"/v1/conversations/{conversation_id}/messages", json={"text": "hi"}, headers=auth
    )
    receipt = await api.post(
        f"/v1/conversations/{conversation_id}/read", json={"seq": 2}, headers=auth
    )
    assert receipt.status_code == 204
    assert (await runtime.store.get_conversation(conversation_id)).customer_read_seq == 2
    beyond = await api.post(
        f"/v1/conversations/{conversation_id}/read", json={"seq": 99}, headers=auth
    )
    assert beyond.status_code == 204
    assert (await runtime.store.get_conversation(conversation_id)).customer_read_seq == 2
    assert (
        await api.post(f"/v1/conversations/{conversation_id}/read", json={"seq": 1})
    ).status_code == 401


# ------------------------------------------------------------------ replies back in


def mailgun_post(
    recipient: str,
    sender: str = CUSTOMER,
    text_: str = "Thanks, that worked!",
    *,
    key: str = SIGNING_KEY,
    timestamp: float | None = None,
    token: str | None = None,
) -> dict[str, str]:
    stamp = str(int(timestamp if timestamp is not None else time.time()))
    token = token or hashlib.sha256(f"{stamp}{recipient}{text_}".encode()).hexdigest()[:50]
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "recipient": recipient,
        "sender": sender.lower(),
        "from": f"Robin <{sender}>",
        "subject": "Re: New reply from Kestrel Audio support",
        "body-plain": f"{text_}\n\nOn Mon, Alex wrote:\n> Here is the fix.\n",
        "stripped-text": text_,
        "timestamp": stamp,
        "token": token,
        "signature": signature,
    }


async def customer_messages(runtime: GigCX, conversation_id: str) -> list[str]:
    messages = await runtime.store.messages_after(conversation_id)
    return [m.text for m in messages if m.author == "customer"]


async def test_a_reply_by_email_comes_back_into_the_conversation(
    runtime: GigCX, channel: EmailChannel, api: httpx.AsyncClient
):
    conversation_id, _handoff = await waiting_for_alex(runtime)
    address = f"{channel.signer.reply_local_part(conversation_id)}@reply.kestrel.example"
    async with runtime.bus.subscribe() as subscription:
        answer = await api.post("/email/inbound", data=mailgun_post(address, CUSTOMER.upper()))
        assert answer.status_code == 200, answer.text
        seen = []
        async for event in subscription:
            seen.append(event)
            if event.type == events.MESSAGE_CREATED:
                break
    assert seen[-1].conversation_id == conversation_id
    assert seen[-1].data["message"]["author"] == "customer"
    assert seen[-1].data["message"]["text"] == "Thanks, that worked!"
    assert await customer_messages(runtime, conversation_id) == [
        "my X2 won't pair",
        "Thanks, that worked!",
    ]


async def test_refused_replies_store_nothing(
    runtime: GigCX,
    channel: EmailChannel,
    api: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
):
    conversation_id, _handoff = await waiting_for_alex(runtime)
    address = f"{channel.signer.reply_local_part(conversation_id)}@reply.kestrel.example"
    forged = f"reply+{conversation_id}.0000000000000000@reply.kestrel.example"
    cases = [
        (mailgun_post(address, key="not-the-key"), 401, "signature does not match"),
        ({**mailgun_post(address), "signature": "é" * 64}, 401, "signature does not match"),
        (mailgun_post(address, timestamp=time.time() - 3600), 401, "timestamp"),
        (mailgun_post(forged), 406, "not a reply address"),
        (mailgun_post(address, sender="someone.else@example.org"), 406, "not the address"),
    ]
    with caplog.at_level(logging.WARNING):
        for form, status, words in cases:
            answer = await api.post("/email/inbound", data=form)
            assert answer.status_code == status, (words, answer.text)
            assert words in answer.json()["detail"]
    assert "someone.else" not in caplog.text and CUSTOMER.lower() not in caplog.text.lower()

    taken = mailgun_post(address, token="t" * 50)
    assert (await api.post("/email/inbound", data=taken)).status_code == 200
    replayed = await api.post("/email/inbound", data=taken)
    assert replayed.status_code == 409
    assert await customer_messages(runtime, conversation_id) == [
        "my X2 won't pair",
        "Thanks, that worked!",
    ], "only the one good reply, once"


def test_quoted_history_is_cut_when_the_service_did_not():
    body = (
        "Yes, the left one.\n\nOn Tue, 3 Nov 2026, Kestrel Audio <help@kestrel.example> wrote:\n"
        "> Which bud?\n"
    )
    assert reply_text("", body) == "Yes, the left one."
    ours = "Works now\n-- Reply above this line to answer in the conversation --\nHi,\n"
    assert reply_text("", ours) == "Works now"
    assert reply_text("  Just this  ", body) == "Just this"


# ------------------------------------------------------------------ settings


def test_enabled_email_without_a_server_names_the_missing_fields(tmp_path: Path):
    config = tmp_path / "gigcx.yaml"
    config.write_text("brand: kestrel\nemail:\n  enabled: true\n  reply_domain: r.example\n")
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    message = str(error.value)
    for name in ("email.smtp_host", "email.from_address", "email.link_secret"):
        assert name in message
    assert "GIGCX_EMAIL__INBOUND_SIGNING_KEY" in message
    config.write_text("brand: kestrel\nemail:\n  from_address: not-an-address\n")
    with pytest.raises(ConfigError, match=r"email\.from_address: must be an e-mail"):
        load_settings(config)
