"""Knowledge gaps as a brand team reads them: escalated and low-rated questions grouped by
meaning with the real all-MiniLM-L6-v2 embedder, largest group first, with examples, the
passages the bot had and how often each gap comes back."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sklearn.metrics import adjusted_rand_score

from gigcx.config import EmbeddingSettings
from gigcx.insights.gaps import DEFAULT_SIMILARITY, GapCluster, GapQuestion, find_gaps
from gigcx.knowledge.embeddings import create_embedder

Embed = Callable[[list[str]], list[list[float]]]

# Labelled paraphrase groups of two brands, written the way customers write (typos, no
# capitals, half sentences). The default similarity was chosen on these and on CLINC150.
HEADSETS = {
    "where is my order": [
        "where is my order",
        "my package hasnt arrived yet",
        "order still not delivered, its been 2 weeks",
        "when will my parcel arrive??",
        "tracking says shipped but nothing came",
        "havent recieved my headset order",
    ],
    "refund": [
        "when do i get my refund",
        "returned the earbuds 10 days ago still no money back",
        "refund not showing on my card",
        "how long does a refund take",
        "where is my refund",
    ],
    "reset": [
        "how do I reset my headset",
        "how to factory reset the X2",
        "need to do a hard reset on my earbuds",
        "reset to factory settings?",
        "restore headset to default settings how",
    ],
    "ps5": [
        "does it work with PS5",
        "is the X2 compatible with playstation 5",
        "can i use these on my ps5 console",
        "ps5 support?",
        "will the headset connect to a playstation",
    ],
    "battery": [
        "battery dies after an hour",
        "the battery drains really fast",
        "my earbuds wont hold a charge",
        "battery life is terrible, lasts 2 hrs",
        "charge runs out way too quick",
    ],
    "microphone": [
        "my mic doesnt work on discord",
        "people cant hear me on teams calls",
        "microphone not picking up my voice",
        "mic is muted all the time even when i unmute",
        "nobody can hear me when i talk",
    ],
    "address": [
        "can i change my delivery address",
        "i moved, need to update shipping address on my order",
        "wrong address on the order pls fix",
        "how do I change where my package gets sent",
    ],
    "warranty": [
        "the hinge snapped, is that under warranty",
        "headband cracked after 3 months",
        "my headset broke, can i get a replacement",
        "warranty claim for broken headphones",
        "plastic band broke off, covered by warranty?",
    ],
    "discount code": [
        "discount code not working",
        "promo code says invalid at checkout",
        "my coupon wont apply",
        "the voucher code gives an error",
    ],
    "firmware": [
        "firmware update keeps failing",
        "update stuck at 50 percent",
        "cant update the firmware, error 0x12",
        "the app says update failed",
    ],
}
CLOTHES = {
    "size exchange": [
        "can i exchange for a bigger size",
        "the shoes are too small, how do i swap them",
        "need a size M instead of S",
        "exchange jacket for different size",
    ],
    "login": [
        "i cant log in to my account",
        "forgot my password and the reset email never comes",
        "login keeps saying wrong password",
        "locked out of my account",
    ],
    "invoice": [
        "can i get an invoice for my order",
        "need a receipt with VAT for my company",
        "where do i download my invoice",
        "send me the bill for order 4411 please",
    ],
    "cancel": [
        "how do i cancel my subscription",
        "stop my monthly box",
        "i want to unsubscribe from the membership",
        "cancel auto renewal please",
    ],
    "colour": [
        "colour faded after one wash",
        "the black tshirt turned grey in the washing machine",
        "dye ran and ruined my other clothes",
        "jeans lost their color quickly",
    ],
    "opening hours": [
        "what time does the store open",
        "are you open on sundays",
        "opening hours of the london shop?",
        "when does the shop close today",
    ],
    "gift card": [
        "how do i use a gift card online",
        "gift card balance?",
        "my giftcard code isnt accepted",
        "can i pay with a gift voucher",
    ],
}
# Topics whose every wording lands in one group of its own. The others lose a question or
# two that leans on the product word ("my earbuds wont hold a charge") to a group of their
# own: MiniLM weighs "headset" and "earbuds" heavily, and "order" ("where is my order" sits
# with "can i get an invoice for my order").
CLEAN_TOPICS = [
    "ps5",
    "microphone",
    "address",
    "discount code",
    "firmware",
    "size exchange",
    "login",
    "cancel",
    "colour",
    "opening hours",
    "gift card",
]

IN = " \u203a "  # between a passage title and its section, as the bot shows them
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday


@pytest.fixture(scope="module")
def embed() -> Embed:
    return create_embedder(EmbeddingSettings()).embed_documents


def ask(
    text: str,
    conversation: str = "c1",
    at: datetime = START,
    kind: str = "escalated",
    reason: str | None = "low_confidence",
    product: str | None = None,
    passages: tuple[str, ...] = (),
) -> GapQuestion:
    route = "expert" if kind == "escalated" else None
    return GapQuestion(text, conversation, at, kind, reason, route, product, passages)


def labelled(topics: dict[str, list[str]]) -> tuple[list[GapQuestion], dict[str, str]]:
    questions, topic_of = [], {}
    for number, (topic, texts) in enumerate(topics.items()):
        for position, text in enumerate(texts):
            questions.append(ask(text, f"{topic}-{position}", START + timedelta(hours=number)))
            topic_of[text] = topic
    return questions, topic_of


def cluster_of(clusters: list[GapCluster], text: str, questions: list[GapQuestion]) -> int:
    """Which cluster holds `text`: clusters list their most central examples, so the test
    asks for all examples and finds the text among them."""
    for number, cluster in enumerate(clusters):
        if any(example.text == text for example in cluster.examples):
            return number
    raise AssertionError(f"{text!r} is in no cluster")


def agreement(clusters: list[GapCluster], topic_of: dict[str, str]) -> float:
    texts = sorted(topic_of)
    found = {example.text: n for n, c in enumerate(clusters) for example in c.examples}
    return adjusted_rand_score([topic_of[t] for t in texts], [found[t] for t in texts])


def test_paraphrases_group_together_and_topics_stay_apart(embed: Embed) -> None:
    questions, topic_of = labelled(HEADSETS | CLOTHES)
    clusters = find_gaps(questions, embed, examples=len(questions))

    same = cluster_of(clusters, "my package hasnt arrived yet", questions)
    assert cluster_of(clusters, "when will my parcel arrive??", questions) == same
    assert cluster_of(clusters, "tracking says shipped but nothing came", questions) == same
    assert cluster_of(clusters, "how do I reset my headset", questions) != cluster_of(
        clusters, "does it work with PS5", questions
    )
    for topic in CLEAN_TOPICS:
        wanted = set((HEADSETS | CLOTHES)[topic])
        holding = {cluster_of(clusters, text, questions) for text in wanted}
        assert len(holding) == 1, topic
        assert {e.text for e in clusters[holding.pop()].examples} == wanted, topic
    assert agreement(clusters, topic_of) >= 0.75


@pytest.mark.parametrize("topics", [HEADSETS, CLOTHES, HEADSETS | CLOTHES])
def test_the_default_similarity_beats_a_looser_and_a_stricter_one(
    embed: Embed, topics: dict[str, list[str]]
) -> None:
    questions, topic_of = labelled(topics)
    scores = {
        similarity: agreement(
            find_gaps(questions, embed, similarity=similarity, examples=len(questions)),
            topic_of,
        )
        for similarity in (DEFAULT_SIMILARITY - 0.1, DEFAULT_SIMILARITY, DEFAULT_SIMILARITY + 0.1)
    }
    assert scores[DEFAULT_SIMILARITY] >= max(scores.values())
    assert scores[DEFAULT_SIMILARITY] >= 0.7


def test_a_brand_team_sees_the_biggest_gap_first_with_what_the_bot_had(embed: Embed) -> None:
    pairing = (f"Pairing the X2{IN}Steps", f"Pairing the X2{IN}Troubleshooting")
    questions = [
        # Monday: two conversations, one asking twice (once spelled in capitals).
        ask("how do I pair my X2 with my iphone", "a", START, passages=pairing, product="X2"),
        ask(
            "HOW DO I PAIR MY X2  WITH MY IPHONE",
            "a",
            START + timedelta(minutes=5),
            passages=pairing,
            product="X2",
        ),
        ask(
            "x2 wont pair with my phone",
            "b",
            START + timedelta(hours=2),
            kind="low_rated",
            reason=None,
            passages=(pairing[0], pairing[0]),
            product="X2",
        ),
        # Wednesday 23:30 in Berlin is still Wednesday in UTC; Thursday 00:30 in Berlin is not.
        ask(
            "cant connect the x2 to bluetooth on my phone",
            "c",
            datetime(2026, 11, 4, 23, 30, tzinfo=timezone(timedelta(hours=1))),
            reason="expert_needed",
            product="X2",
        ),
        ask(
            "pairing my x2 headset with iphone fails",
            "d",
            datetime(2026, 11, 5, 0, 30, tzinfo=timezone(timedelta(hours=1))),
            passages=pairing[:1],
            product="X2 Pro",
        ),
        # A second, smaller gap.
        ask("what is your return policy", "e", START + timedelta(days=1), reason="no_answer"),
        ask(
            "how many days do i have to return something",
            "f",
            START + timedelta(days=15),
            kind="low_rated",
            reason=None,
            passages=(f"Returns{IN}Policy",),
        ),
        # A one-off.
        ask("do you ship to iceland", "g", START + timedelta(days=3)),
    ]

    clusters = find_gaps(questions, embed, examples=3)

    assert [c.size for c in clusters] == [5, 2, 1]
    pairing_gap, returns_gap, one_off = clusters
    assert pairing_gap.conversations == 4
    # Examples are distinct texts (case and spacing folded), the most central first.
    texts = [e.text.casefold() for e in pairing_gap.examples]
    assert len(texts) == 3 == len(set(" ".join(t.split()) for t in texts))
    assert pairing_gap.label == pairing_gap.examples[0].text
    assert "x2" in pairing_gap.label.casefold()
    # A passage listed twice in one answer counts once.
    assert pairing_gap.passages == (
        (f"Pairing the X2{IN}Steps", 4),
        (f"Pairing the X2{IN}Troubleshooting", 2),
    )
    assert pairing_gap.reasons == (("low_confidence", 3), ("expert_needed", 1))
    assert pairing_gap.products == (("X2", 4), ("X2 Pro", 1))
    assert pairing_gap.low_rated == 1
    assert pairing_gap.first_seen == START
    assert pairing_gap.last_seen == datetime(2026, 11, 4, 23, 30, tzinfo=UTC)
    assert pairing_gap.days_seen == 2  # Monday and Wednesday (UTC)
    assert pairing_gap.per_week == 5.0  # less than a week counts as one

    assert returns_gap.label in {
        "what is your return policy",
        "how many days do i have to return something",
    }
    assert returns_gap.days_seen == 2
    assert returns_gap.per_week == pytest.approx(2 / 2)  # two weeks spanned
    assert returns_gap.passages == ((f"Returns{IN}Policy", 1),)
    assert returns_gap.reasons == (("no_answer", 1),)
    assert returns_gap.low_rated == 1

    assert one_off.label == "do you ship to iceland"
    assert one_off.first_seen == one_off.last_seen


def test_the_same_questions_in_any_order_give_the_same_gaps(embed: Embed) -> None:
    questions, _ = labelled(HEADSETS)
    questions += [ask("Where is my ORDER", "x", START + timedelta(days=2))]
    shuffled = questions[:]
    random.Random(5).shuffle(shuffled)

    assert find_gaps(shuffled, embed) == find_gaps(questions, embed)
    assert find_gaps(questions[::-1], embed) == find_gaps(questions, embed)


def test_each_distinct_text_is_embedded_once(embed: Embed) -> None:
    seen: list[str] = []

    def recording(texts: list[str]) -> list[list[float]]:
        seen.extend(texts)
        return embed(texts)

    questions = [ask("Where is my order?", str(n)) for n in range(50)]
    questions += [ask("where  is my   ORDER?", "late"), ask("do you ship to iceland")]

    clusters = find_gaps(questions, recording)

    assert sorted(seen) == ["do you ship to iceland", "where is my order?"]
    assert [c.size for c in clusters] == [51, 1]
    assert clusters[0].conversations == 51


def test_equal_sizes_show_the_most_recent_first_and_limits_apply(embed: Embed) -> None:
    questions = [
        ask("does it work with PS5", "a", START),
        ask("is the x2 compatible with playstation 5", "b", START + timedelta(days=1)),
        ask("what is your return policy", "c", START + timedelta(days=2)),
        ask("how many days do i have to return something", "d", START + timedelta(days=3)),
        ask("do you ship to iceland", "e", START + timedelta(days=9)),
    ]
    clusters = find_gaps(questions, embed)
    assert [c.size for c in clusters] == [2, 2, 1]
    assert clusters[0].last_seen == START + timedelta(days=3)

    assert [c.size for c in find_gaps(questions, embed, min_size=2)] == [2, 2]
    assert len(find_gaps(questions, embed, limit=1)) == 1


def test_no_questions_and_one_question(embed: Embed) -> None:
    assert find_gaps([], embed) == []

    (only,) = find_gaps(
        [ask("do you ship to iceland", passages=(f"Shipping{IN}Countries",))], embed
    )
    assert only.size == only.conversations == only.days_seen == 1
    assert only.label == "do you ship to iceland"
    assert only.passages == ((f"Shipping{IN}Countries", 1),)
    assert only.per_week == 1.0


def test_bad_settings_are_named(embed: Embed) -> None:
    with pytest.raises(ValueError, match="similarity"):
        find_gaps([ask("hi")], embed, similarity=1.5)
    with pytest.raises(ValueError, match="examples"):
        find_gaps([ask("hi")], embed, examples=0)
