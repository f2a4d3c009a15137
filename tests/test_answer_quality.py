"""What customers see of the front line's evidence-based decision: the section that answers,
flowing text, a question back when products differ, staff topics and requests for a person
recognised by meaning, and a clear refusal of a missing model file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gigcx.app import GigCX
from gigcx.bot.answerability import AnswerabilityModelError, load_model
from tests.test_bot import chat


async def test_a_quoted_answer_reads_as_flowing_text_not_hard_wrapped_lines(
    gigcx_runtime: GigCX,
):
    _, [turn] = await chat(gigcx_runtime, "my x2 doesn't show up when I search for bluetooth")
    [reply] = turn.replies
    assert reply.citations[0]["path"] == "x2/pairing.md"
    # The knowledge file wraps this sentence after "the X2 is"; the chat shows it whole.
    assert "means the X2 is already connected to another device" in reply.text


async def test_a_question_that_splits_between_two_models_gets_a_question_back(
    gigcx_runtime: GigCX,
):
    _, turns = await chat(gigcx_runtime, "how long does the battery last?", "the X1")
    first, second = turns
    assert first.decision is not None and first.decision.action == "clarify"
    assert "X2" in first.replies[0].text and "X1" in first.replies[0].text
    assert first.state == "bot"
    # The answer to "which one?" answers the first question, for that model.
    assert second.decision is not None and second.decision.action == "answer"
    assert second.replies[0].citations[0]["path"] == "x1/battery.md"


@pytest.mark.parametrize(
    "text",
    [
        "the headset I bought arrived with a cracked ear cup, I want a replacement",
        "hello?? the payment went out of my bank two times for one headset",
        "VB-209311 still says processing after a week",
    ],
)
async def test_own_order_and_payment_questions_in_everyday_words_go_to_staff(
    gigcx_runtime: GigCX, text: str
):
    _, [turn] = await chat(gigcx_runtime, text)
    assert turn.decision is not None
    assert (turn.decision.action, turn.decision.route) == ("escalate", "staff"), text


async def test_a_request_for_a_person_inside_a_longer_message_is_handed_over(
    gigcx_runtime: GigCX,
):
    text = (
        "The X2 keeps cutting out every few minutes on calls. I've had enough of this, "
        "I prefer to deal with a human being who can actually look at it"
    )
    _, [turn] = await chat(gigcx_runtime, text)
    assert turn.decision is not None and turn.decision.reason == "human_requested"
    assert turn.state == "waiting"


async def test_a_general_policy_question_is_answered_not_sent_to_staff(gigcx_runtime: GigCX):
    _, [turn] = await chat(gigcx_runtime, "how can I track an order?")
    assert turn.decision is not None and turn.decision.action == "answer"


def test_a_missing_or_outdated_model_file_is_refused_with_how_to_rebuild_it(tmp_path: Path):
    with pytest.raises(AnswerabilityModelError, match=r"train_answerability\.py"):
        load_model(tmp_path / "missing.json")
    old = tmp_path / "old.json"
    old.write_text('{"features_version": 0, "features": ["dense"]}')
    with pytest.raises(AnswerabilityModelError, match="features version 0"):
        load_model(old)
