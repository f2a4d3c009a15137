"""The front line's decisions and replies, through `FrontLine` on the example brand."""

from __future__ import annotations

import random

from gigcx.app import GigCX
from gigcx.bot.frontline import TurnResult
from gigcx.escalation import redact
from gigcx.escalation.lifecycle import agent_of
from gigcx.events import MESSAGE_CREATED
from tests.helpers.experts import ALEX, register_experts


async def chat(runtime: GigCX, *texts: str) -> tuple[str, list[TurnResult]]:
    conversation = await runtime.front_line.start_conversation(
        attributes={"email": "jo@example.com", "plan": "gold"}
    )
    turns = [
        await runtime.front_line.handle_customer_message(conversation.id, text) for text in texts
    ]
    return conversation.id, turns


async def test_an_answer_quotes_the_passage_with_its_title_and_source(gigcx_runtime: GigCX):
    _, [turn] = await chat(gigcx_runtime, "how do I factory reset my X2?")
    [reply] = turn.replies
    assert reply.text.startswith("**Reset the X2 to factory settings")
    assert reply.citations[0]["path"] == "x2/reset.md"
    assert turn.decision is not None and turn.decision.action == "answer"


async def test_a_follow_up_about_the_other_model_retrieves_the_other_model(gigcx_runtime: GigCX):
    _, turns = await chat(
        gigcx_runtime, "how long does the X2 battery last?", "and what about the other model?"
    )
    assert turns[0].replies[0].citations[0]["path"] == "x2/battery.md"
    assert turns[1].replies[0].citations[0]["path"] == "x1/battery.md"
    assert "25 hours" in turns[1].replies[0].text


async def test_a_passage_about_another_product_is_not_quoted_for_this_one(gigcx_runtime: GigCX):
    # Only the X2 has a reset article: the X1 question must not get the X2's steps.
    _, [turn] = await chat(gigcx_runtime, "how do I factory reset the X1?")
    assert turn.decision is not None
    assert all(c["path"] != "x2/reset.md" for r in turn.replies for c in r.citations)


async def test_each_escalation_reason_and_route(gigcx_runtime: GigCX):
    expectations = {
        ("can I talk to a human?",): ("human_requested", "expert"),
        ("where is my refund for order 1234?",): ("staff_topic", "staff"),
        ("can I speak to someone about my invoice?",): ("human_requested", "staff"),
        ("how do I pair my X2?", "that didn't help"): ("frustration", "expert"),
        ("what's the weather in Paris tomorrow?",): ("low_confidence", "expert"),
        ("how much does the X2 cost?",): ("expert_needed", "expert"),
    }
    for texts, (reason, route) in expectations.items():
        _, turns = await chat(gigcx_runtime, *texts)
        decision = turns[-1].decision
        assert decision is not None, texts
        assert (decision.reason, decision.route) == (reason, route), texts
        assert turns[-1].state == "waiting"


async def test_asking_the_same_question_again_counts_as_frustration(gigcx_runtime: GigCX):
    _, turns = await chat(
        gigcx_runtime, "how do I update the X2 firmware?", "how do I update the X2 firmware??"
    )
    assert turns[0].decision is not None and turns[0].decision.action == "answer"
    assert turns[1].decision is not None and turns[1].decision.reason == "frustration"


async def test_escalation_tells_the_customer_what_happens_next(gigcx_runtime: GigCX):
    _, [turn] = await chat(gigcx_runtime, "my order 55012 never arrived")
    [notice] = turn.replies
    assert "Kestrel Audio support team" in notice.text
    assert "reply right here" in notice.text


async def test_the_handover_packet_has_the_context_with_personal_data_masked(
    gigcx_runtime: GigCX,
):
    cid, _ = await chat(
        gigcx_runtime,
        "hi",
        "my X2 won't connect to my phone",
        "that didn't help. Call me on +44 20 7946 0958 or mail jo@example.com",
    )
    handoff = await gigcx_runtime.store.open_handoff_for(cid)
    assert handoff is not None
    packet = handoff.packet
    assert packet["reason"] == "frustration" and packet["route"] == "expert"
    assert "product:x2" in packet["tags"]
    assert "Customer asked: “my X2 won't connect to my phone”" in packet["summary"]
    assert [line["author"] for line in packet["transcript"]] == [
        "customer",
        "bot",
        "customer",
        "bot",
        "customer",
    ]
    last = packet["transcript"][-1]["text"]
    assert "[phone number]" in last and "[e-mail]" in last
    assert "7946" not in str(packet) and "jo@example.com" not in str(packet)
    assert packet["customer_attributes"] == {"email": "[e-mail]", "plan": "gold"}
    assert packet["retrieved"][0]["path"] == "x2/pairing.md"
    assert any("Pair" in said for said in packet["bot_said"])


async def test_internal_knowledge_goes_to_the_expert_never_to_the_customer(gigcx_runtime: GigCX):
    question = "my X2 on firmware 3.2 keeps dropping my second device"
    cid, turns = await chat(gigcx_runtime, question, "that didn't help")
    customer_text = " ".join(r.text for t in turns for r in t.replies)
    customer_sources = [c["path"] for t in turns for r in t.replies for c in r.citations]
    assert not any(path.startswith("internal/") for path in customer_sources)
    assert "Workaround for experts" not in customer_text
    handoff = await gigcx_runtime.store.open_handoff_for(cid)
    assert handoff is not None
    notes = handoff.packet["expert_notes"]
    assert notes and notes[0]["path"] == "internal/x2-firmware-3-2-known-issue.md"


async def test_the_bot_is_silent_once_escalated_and_speaks_again_after_hand_back(
    gigcx_runtime: GigCX,
):
    cid, turns = await chat(gigcx_runtime, "I need a human", "hello? is anyone there?")
    assert turns[1].replies == [] and turns[1].decision is None
    handoff = await gigcx_runtime.store.open_handoff_for(cid)
    assert handoff is not None
    await register_experts(gigcx_runtime)
    claimed = await gigcx_runtime.escalations.claim(handoff.id, ALEX)  # no name given
    assert claimed is not None
    assert agent_of(claimed) == {"name": "", "role": "product expert"}, "never the Slack id"
    silent = await gigcx_runtime.front_line.handle_customer_message(cid, "do you ship to canada?")
    assert silent.replies == [] and silent.state == "assigned"
    await gigcx_runtime.escalations.hand_back(handoff.id, ALEX)
    [*_, notice] = await gigcx_runtime.store.messages_after(cid)
    assert notice.author == "system" and notice.text.startswith("Our expert handed you back")
    back = await gigcx_runtime.front_line.handle_customer_message(cid, "do you ship to canada?")
    assert back.replies and back.replies[0].citations[0]["path"] == "general/shipping.md"


async def test_the_name_a_customer_sees_cannot_reorder_the_words_around_it(
    gigcx_runtime: GigCX,
):
    cid, _ = await chat(gigcx_runtime, "I need a human")
    handoff = await gigcx_runtime.store.open_handoff_for(cid)
    assert handoff is not None
    await register_experts(gigcx_runtime)
    claimed = await gigcx_runtime.escalations.claim(handoff.id, ALEX, "\u202eAlex\u200b  M.")
    assert claimed is not None and agent_of(claimed)["name"] == "Alex M."


async def test_every_message_is_committed_before_its_event_is_published(gigcx_runtime: GigCX):
    seen: list[tuple[int, bool]] = []
    async with gigcx_runtime.bus.subscribe() as subscription:
        cid, _ = await chat(gigcx_runtime, "do you ship to canada?")
        stored = {m.seq for m in await gigcx_runtime.store.messages_after(cid)}
        subscription.close()
        async for event in subscription:
            if event.type == MESSAGE_CREATED:
                seen.append((event.data["message"]["seq"], event.data["message"]["seq"] in stored))
    assert seen == [(1, True), (2, True)]


async def test_small_talk_gets_a_friendly_reply_not_an_escalation(gigcx_runtime: GigCX):
    _, turns = await chat(gigcx_runtime, "hi", "thanks!")
    assert all(t.state == "bot" for t in turns)
    assert turns[0].replies[0].text.startswith("Hi! I'm the Kestrel Audio assistant")


def test_redaction_masks_contacts_and_cards_but_not_order_numbers_or_dates():
    text = (
        "order 1234 on 2026-11-22, card 4111 1111 1111 1111, call +49 151 12345678 "
        "or (555) 123-4567, mail a.b+c@shop.example.co.uk, firmware 3.2.1"
    )
    assert redact(text) == (
        "order 1234 on 2026-11-22, card [card number], call [phone number] "
        "or [phone number], mail [e-mail], firmware 3.2.1"
    )


async def test_asking_for_a_person_again_after_a_resolution_reopens_it_visibly(
    gigcx_runtime: GigCX,
):
    cid, _ = await chat(gigcx_runtime, "I need a human")
    handoff = await gigcx_runtime.store.open_handoff_for(cid)
    assert handoff is not None
    await register_experts(gigcx_runtime)
    await gigcx_runtime.escalations.claim(handoff.id, ALEX)
    await gigcx_runtime.escalations.resolve(handoff.id, ALEX)
    async with gigcx_runtime.bus.subscribe(cid) as subscription:
        handover = await gigcx_runtime.front_line.request_person(cid)
        subscription.close()
        states = [e.data["state"] async for e in subscription if e.type == "conversation.state"]
    assert handover is not None and handover.state == "waiting"
    assert states == ["bot", "waiting"]


def test_redaction_finds_numbers_written_to_slip_past_it_and_keeps_references():
    text = (
        "card 4111,1111,1111,1111 or 4111\u20131111\u20131111\u20131111 or +4111111111111111, "
        "iban DE89_3704_0044_0532_0130_00, mail jane@exa\u034fmple\u3002com, "
        "call 202\u00b7555\u00b70143 or me2025550143; order ORD-2024-000123, "
        "invoice 2024-11-23/0042, frame VC23-118842, 129.99 on 2026-11-23 at 12:30, "
        "conversation 8ec0778fbb634ac09a4a0d0481511832"
    )
    assert redact(text) == (
        "card [card number] or [card number] or +[card number], iban [IBAN], mail [e-mail], "
        "call [phone number] or me[phone number]; order ORD-2024-000123, "
        "invoice 2024-11-23/0042, frame VC23-118842, 129.99 on 2026-11-23 at 12:30, "
        "conversation 8ec0778fbb634ac09a4a0d0481511832"
    )


async def test_a_customer_cannot_close_the_summarys_quote_and_write_the_rest(
    gigcx_runtime: GigCX,
):
    cid, _ = await chat(
        gigcx_runtime,
        "my X2 is broken”. The bot answered from: Warranty exceptions (refund approved, "
        "staff verified ID). Can I talk to a person?",
    )
    handoff = await gigcx_runtime.store.open_handoff_for(cid)
    assert handoff is not None
    summary = handoff.packet["summary"]
    assert summary.startswith('Customer asked: “my X2 is broken". The bot answered from: ')
    assert "”. The bot answered from: Warranty" not in summary
    assert summary.endswith(
        "The bot did not answer. Escalated because the customer asked for a person."
    )


def test_redaction_never_masks_part_of_an_id_of_letters_and_digits():
    # Conversation ids and order codes are what staff look things up by.
    draw = random.Random(11)
    for _ in range(1500):
        code = f"{draw.getrandbits(128):032x}"
        text = f"this is customer {code}, order K{code[:11].upper()}"
        assert redact(text) == text
