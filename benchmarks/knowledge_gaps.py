"""Knowledge gaps benchmark: 10,000 escalated questions grouped by meaning, embedding included.

The questions come from 60 support topics of a headset brand, each asked in 5 wordings with
a product, a greeting or sign-off and sometimes a typo (about 300 templates x 12 products
x variants), topics asked with Zipf-like frequency, so that many texts are distinct and a
few gaps are big. Reported: questions, distinct texts, embedding / clustering / total
seconds (goal: total <= 30 s), clusters found, largest cluster sizes, agreement with the
topics the questions were made from (adjusted Rand index), peak RSS of the process and the
tracemalloc peak of the clustering step.

Run: .venv/bin/python benchmarks/knowledge_gaps.py [--questions 10000] [--similarity 0.40]
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gigcx.config import EmbeddingSettings  # noqa: E402
from gigcx.insights.gaps import (  # noqa: E402
    DEFAULT_SIMILARITY,
    GapQuestion,
    find_gaps,
    meaning_text,
)
from gigcx.knowledge.embeddings import create_embedder  # noqa: E402

PRODUCTS = [
    "X2", "X2 Pro", "Aero buds", "Aero buds 2", "Nova headset", "Nova 7", "Pulse earbuds",
    "Pulse ANC", "Studio 3", "Studio mini", "Drift", "Drift sport",
]  # fmt: skip

# Topic -> wordings; {p} is a product.
TOPICS: dict[str, list[str]] = {
    "order missing": [
        "where is my order",
        "my {p} order hasnt arrived",
        "package still not delivered",
        "when will my {p} arrive",
        "tracking says delivered but i got nothing",
    ],
    "refund": [
        "when do i get my refund for the {p}",
        "refund still not on my card",
        "how long do refunds take",
        "returned my {p} but no money back",
        "where is my refund",
    ],
    "reset": [
        "how do i reset my {p}",
        "factory reset the {p}",
        "hard reset {p} how",
        "restore {p} to default settings",
        "reset to factory settings?",
    ],
    "ps5": [
        "does the {p} work with ps5",
        "is {p} compatible with playstation 5",
        "can i use my {p} on ps5",
        "ps5 support for {p}?",
        "will {p} connect to my playstation",
    ],
    "xbox": [
        "does the {p} work on xbox",
        "{p} xbox series x compatible?",
        "can i plug {p} into my xbox controller",
        "xbox chat audio with {p}",
        "no sound on xbox with {p}",
    ],
    "battery drain": [
        "{p} battery dies after an hour",
        "battery drains really fast on my {p}",
        "{p} wont hold a charge",
        "battery life is terrible",
        "charge runs out way too quick",
    ],
    "not charging": [
        "my {p} wont charge",
        "{p} not charging at all",
        "charging light doesnt come on",
        "case doesnt charge the {p}",
        "plugged in but {p} stays dead",
    ],
    "mic": [
        "mic not working on discord",
        "people cant hear me on teams with {p}",
        "{p} microphone not picking up my voice",
        "nobody can hear me when i talk",
        "mic is muted even when i unmute",
    ],
    "mic noise": [
        "my mic picks up a lot of background noise",
        "people say i sound robotic on {p}",
        "static on the {p} mic",
        "echo when i talk on calls",
        "my voice sounds muffled to others",
    ],
    "pair iphone": [
        "how do i pair {p} with iphone",
        "{p} wont pair with my phone",
        "cant connect {p} to bluetooth",
        "pairing {p} fails on ios",
        "{p} not showing up in bluetooth list",
    ],
    "pair pc": [
        "how to connect {p} to my windows laptop",
        "{p} not detected by my pc",
        "pc doesnt recognize the {p} dongle",
        "connect {p} to mac",
        "usb receiver not working on computer",
    ],
    "one side": [
        "only the left earbud works",
        "no sound in right ear on {p}",
        "one side of my {p} is silent",
        "sound only from one side",
        "left {p} bud not connecting",
    ],
    "firmware": [
        "firmware update keeps failing",
        "{p} update stuck at 50 percent",
        "cant update {p} firmware error 0x12",
        "app says update failed",
        "how do i update the {p} firmware",
    ],
    "app login": [
        "cant log into the app",
        "app keeps saying wrong password",
        "forgot my password, reset email never comes",
        "locked out of my account",
        "app login loop",
    ],
    "app crash": [
        "app crashes when i open it",
        "companion app keeps closing",
        "app freezes on the {p} screen",
        "app wont load on android",
        "app stuck on loading",
    ],
    "eq": [
        "how do i change the eq on {p}",
        "bass is too weak on my {p}",
        "can i adjust the equalizer",
        "{p} sounds tinny",
        "custom eq presets?",
    ],
    "anc": [
        "noise cancelling not working on {p}",
        "anc makes a hissing sound",
        "how do i turn on anc",
        "{p} noise cancelling is weak",
        "anc turns off by itself",
    ],
    "address": [
        "can i change my delivery address",
        "need to update the shipping address on my order",
        "wrong address on the order pls fix",
        "i moved, change where my {p} gets sent",
        "edit address after ordering",
    ],
    "cancel order": [
        "i want to cancel my order",
        "cancel my {p} order please",
        "can i still cancel before it ships",
        "ordered by mistake, cancel",
        "how to cancel an order",
    ],
    "warranty": [
        "is a broken hinge covered by warranty",
        "{p} headband cracked after 3 months",
        "my {p} broke, can i get a replacement",
        "warranty claim for broken {p}",
        "how long is the warranty on {p}",
    ],
    "discount": [
        "discount code not working",
        "promo code invalid at checkout",
        "my coupon wont apply",
        "voucher code gives an error",
        "student discount not applied",
    ],
    "invoice": [
        "can i get an invoice for my {p}",
        "need a receipt with vat",
        "where do i download my invoice",
        "send me the bill for my order",
        "invoice has the wrong company name",
    ],
    "price match": [
        "do you price match",
        "{p} is cheaper on amazon, can you match",
        "price dropped after i bought, refund difference?",
        "is there a price guarantee",
        "saw a lower price elsewhere",
    ],
    "international": [
        "do you ship to canada",
        "international shipping to {p} buyers in australia?",
        "can you deliver to norway",
        "shipping costs to the uk",
        "do you ship outside the eu",
    ],
    "ear pain": [
        "{p} hurts my ears after an hour",
        "ear tips are uncomfortable",
        "can i get bigger ear tips for {p}",
        "headset squeezes my head too much",
        "{p} falls out of my ears",
    ],
    "replacement parts": [
        "can i buy replacement ear cushions for {p}",
        "lost one {p} earbud, can i buy just one",
        "need a new charging case",
        "where to buy spare cable",
        "replacement ear pads?",
    ],
    "latency": [
        "audio delay when watching videos",
        "sound out of sync with video on {p}",
        "lag in games with {p}",
        "bluetooth latency too high",
        "lip sync off on netflix",
    ],
    "volume": [
        "{p} volume is too low",
        "max volume not loud enough",
        "volume keeps changing by itself",
        "cant turn up the volume on {p}",
        "sound is very quiet",
    ],
    "multipoint": [
        "can {p} connect to two devices at once",
        "switch between phone and laptop on {p}",
        "multipoint not working",
        "{p} keeps jumping to my tablet",
        "pair with two phones",
    ],
    "water": [
        "is the {p} waterproof",
        "can i swim with {p}",
        "got my {p} wet, now it crackles",
        "sweatproof for running?",
        "ip rating of {p}",
    ],
    "trade in": [
        "do you have a trade in program",
        "can i trade my old {p} for a new one",
        "recycle old headphones",
        "upgrade discount for existing owners",
        "trade in value of {p}",
    ],
    "gift": [
        "can i send the {p} as a gift",
        "gift wrap option?",
        "add a gift message to my order",
        "ship a gift to someone else",
        "gift receipt without prices",
    ],
    "gift card": [
        "how do i use a gift card online",
        "gift card balance",
        "my gift card code isnt accepted",
        "can i pay with a gift voucher",
        "buy a gift card for {p}",
    ],
    "subscription": [
        "how do i cancel my care plan",
        "stop the monthly protection subscription",
        "unsubscribe from the {p} care plan",
        "cancel auto renewal please",
        "charged for a plan i didnt want",
    ],
    "newsletter": [
        "stop sending me emails",
        "unsubscribe me from the newsletter",
        "too many marketing emails",
        "remove me from your mailing list",
        "how do i opt out of promotions",
    ],
    "stock": [
        "when will the {p} be back in stock",
        "{p} sold out, restock date?",
        "is the {p} available in white",
        "notify me when {p} is available",
        "out of stock everywhere",
    ],
    "preorder": [
        "when does my {p} preorder ship",
        "preorder delayed?",
        "can i change my preorder colour",
        "cancel preorder for {p}",
        "release date of {p}",
    ],
    "fake": [
        "is my {p} a fake",
        "how do i check if my {p} is genuine",
        "bought on ebay, serial number invalid",
        "counterfeit {p}?",
        "verify authenticity",
    ],
    "serial": [
        "where is the serial number on {p}",
        "cant find the serial number",
        "serial number for warranty registration",
        "register my {p}",
        "product registration not working",
    ],
    "auto off": [
        "{p} turns off by itself",
        "keeps shutting down after a few minutes",
        "auto power off setting",
        "{p} powers off randomly",
        "how to stop auto shutdown",
    ],
    "touch controls": [
        "touch controls too sensitive on {p}",
        "how do i turn off tap controls",
        "accidentally pausing music when i touch {p}",
        "customize tap gestures",
        "double tap does nothing",
    ],
    "voice assistant": [
        "how do i use siri with {p}",
        "google assistant wont activate",
        "alexa on {p}?",
        "voice assistant button not working",
        "disable voice prompts",
    ],
    "voice prompts": [
        "change the language of voice prompts",
        "the {p} voice is too loud",
        "turn off the beeps on {p}",
        "low battery warning too frequent",
        "voice guidance in spanish",
    ],
    "crackling": [
        "{p} crackling sound",
        "buzzing noise in my {p}",
        "distorted sound at high volume",
        "popping noise when music plays",
        "static hiss in the {p}",
    ],
    "spatial audio": [
        "does {p} support spatial audio",
        "dolby atmos on {p}?",
        "3d audio setting",
        "surround sound for gaming",
        "head tracking on {p}",
    ],
    "codec": [
        "does {p} support aptx",
        "ldac support?",
        "which bluetooth codec does {p} use",
        "aac vs sbc on {p}",
        "hi res audio over bluetooth",
    ],
    "cable": [
        "can i use {p} with a cable",
        "3.5mm jack for {p}?",
        "usb c audio on {p}",
        "wired mode not working",
        "aux cable doesnt give sound",
    ],
    "tv": [
        "connect {p} to my tv",
        "{p} with samsung tv",
        "use {p} with apple tv",
        "tv audio delay with {p}",
        "no sound from tv through bluetooth",
    ],
    "switch": [
        "does {p} work with nintendo switch",
        "switch bluetooth audio with {p}",
        "connect {p} to switch dock",
        "no mic on switch with {p}",
        "switch game chat",
    ],
    "payment failed": [
        "my payment failed",
        "card declined at checkout",
        "paypal not working on your site",
        "charged twice for my {p}",
        "payment error but money taken",
    ],
    "klarna": [
        "can i pay in instalments",
        "is klarna available",
        "buy now pay later for {p}",
        "split payment over 3 months",
        "financing options?",
    ],
    "return how": [
        "how do i return my {p}",
        "return label please",
        "what is your return policy",
        "how many days to return",
        "can i return opened {p}",
    ],
    "damaged delivery": [
        "{p} arrived damaged",
        "box was crushed and {p} is scratched",
        "parcel arrived broken",
        "item damaged in shipping",
        "received a used {p}",
    ],
    "wrong item": [
        "received the wrong item",
        "ordered {p} but got something else",
        "wrong colour sent",
        "got the wrong size ear tips",
        "package had someone elses order",
    ],
    "missing parts": [
        "charging cable missing from the box",
        "no ear tips in my {p} box",
        "case missing from package",
        "{p} came without the dongle",
        "accessories missing",
    ],
    "student": [
        "do you have a student discount",
        "military discount?",
        "discount for nurses",
        "unidays code for {p}",
        "teacher discount",
    ],
    "business": [
        "bulk order of {p} for my company",
        "corporate pricing",
        "business account",
        "buy 50 headsets for the office",
        "volume discount",
    ],
    "hearing": [
        "can {p} help with hearing loss",
        "hearing aid mode?",
        "transparency mode is too quiet",
        "ambient sound on {p}",
        "hear my surroundings while wearing {p}",
    ],
    "sleep": [
        "can i sleep with {p} in",
        "{p} for sleeping?",
        "sleep mode on {p}",
        "are {p} comfortable lying on side",
        "white noise on {p}",
    ],
    "lost": [
        "i lost my {p}, can you track it",
        "find my earbuds feature?",
        "lost the case, buy a new one",
        "{p} stolen, block it",
        "locate my lost {p}",
    ],
}
GREETINGS = ["", "", "", "hi ", "hello, ", "hey ", "hi there, ", "good morning, "]
SIGN_OFFS = ["", "", "", "?", "??", " thanks", " pls help", " asap", "!!", " thank you"]
REASONS = ["low_confidence", "low_confidence", "expert_needed", "no_answer", "customer_asked"]


def typo(text: str, rng: random.Random) -> str:
    """One slip of a thumb: a letter dropped, doubled or swapped with the next."""
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    if len(letters) < 4:
        return text
    at = rng.choice(letters[1:-1])
    slip = rng.randrange(3)
    if slip == 0:
        return text[:at] + text[at + 1 :]
    if slip == 1:
        return text[:at] + text[at] + text[at:]
    return text[:at] + text[at + 1] + text[at] + text[at + 2 :]


def make_questions(count: int, seed: int = 7) -> tuple[list[GapQuestion], list[str]]:
    """`count` escalated questions over 8 weeks, and the topic each was made from."""
    rng = random.Random(seed)
    topics = list(TOPICS)
    rng.shuffle(topics)
    # Zipf-like: the topic of rank r is asked about 1/r^0.8 as often as the first.
    popularity = [1 / (rank + 1) ** 0.8 for rank in range(len(topics))]
    start = datetime(2026, 9, 1, tzinfo=UTC)
    questions, labels = [], []
    for _ in range(count):
        topic = rng.choices(topics, popularity)[0]
        product = rng.choice(PRODUCTS)
        text = rng.choice(TOPICS[topic]).format(p=product)
        text = rng.choice(GREETINGS) + text + rng.choice(SIGN_OFFS)
        if rng.random() < 0.25:
            text = typo(text, rng)
        if rng.random() < 0.1:
            text = text.capitalize()
        low_rated = rng.random() < 0.3
        questions.append(
            GapQuestion(
                text=text,
                conversation_id=f"conv-{rng.randrange(count)}",
                created_at=start + timedelta(seconds=rng.randrange(8 * 7 * 86400)),
                kind="low_rated" if low_rated else "escalated",
                reason=None if low_rated else rng.choice(REASONS),
                route=None if low_rated else rng.choice(["expert", "staff"]),
                product=product,
                passages=tuple(rng.sample([f"{topic} \u203a overview", "FAQ \u203a general"], 1)),
            )
        )
        labels.append(topic)
    return questions, labels


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=10_000)
    parser.add_argument("--similarity", type=float, default=DEFAULT_SIMILARITY)
    args = parser.parse_args()

    questions, labels = make_questions(args.questions)
    distinct = len({meaning_text(q) for q in questions})
    embedder = create_embedder(EmbeddingSettings())
    embedder.embed_documents(["load the model before the clock starts"])
    rss_before = rss_mb()

    cache: dict[str, list[float]] = {}
    embedding_seconds = 0.0

    def timed_embed(texts: list[str]) -> list[list[float]]:
        nonlocal embedding_seconds
        began = time.perf_counter()
        vectors = embedder.embed_documents(texts)
        embedding_seconds += time.perf_counter() - began
        cache.update(zip(texts, vectors, strict=True))
        return vectors

    began = time.perf_counter()
    clusters = find_gaps(questions, timed_embed, similarity=args.similarity)
    total_seconds = time.perf_counter() - began

    # The clustering step again, on the vectors already made, to trace its memory alone.
    tracemalloc.start()
    again = find_gaps(
        questions, lambda texts: [cache[t] for t in texts], similarity=args.similarity
    )
    _, clustering_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert again == clusters, "the same questions gave different gaps"

    print(f"questions               {len(questions):>10,}")
    print(f"distinct texts          {distinct:>10,}")
    print(f"similarity              {args.similarity:>10.2f}")
    print(f"embedding seconds       {embedding_seconds:>10.1f}")
    print(f"clustering seconds      {total_seconds - embedding_seconds:>10.1f}")
    print(f"total seconds           {total_seconds:>10.1f}   (goal <= 30)")
    print(f"clusters found          {len(clusters):>10,}   (made from {len(TOPICS)} topics)")
    print(f"clusters of 10 or more  {sum(c.size >= 10 for c in clusters):>10,}")
    print(f"largest cluster sizes   {', '.join(str(c.size) for c in clusters[:10])}")
    try:
        from sklearn.metrics import adjusted_rand_score
    except ImportError:
        pass
    else:
        found = {}
        for number, cluster in enumerate(
            find_gaps(
                questions,
                lambda t: [cache[x] for x in t],
                similarity=args.similarity,
                examples=len(questions),
            )
        ):
            for example in cluster.examples:
                found[meaning_text(example)] = number
        predicted = [found[meaning_text(q)] for q in questions]
        print(f"agreement with topics   {adjusted_rand_score(labels, predicted):>10.3f}   (ARI)")
    for cluster in clusters[:5]:
        top_topic, _ = Counter(
            labels[i]
            for i, q in enumerate(questions)
            if meaning_text(q) in {meaning_text(e) for e in cluster.examples}
        ).most_common(1)[0]
        print(
            f"  {cluster.size:>5}  {cluster.label!r}  ({top_topic}), {cluster.days_seen} days,"
            f" {cluster.per_week:.0f}/week"
        )
    print(f"peak RSS                {rss_mb():>10.0f} MB   (after model load {rss_before:.0f} MB)")
    print(f"clustering peak         {clustering_peak / 2**20:>10.0f} MB   (tracemalloc)")


if __name__ == "__main__":
    main()
