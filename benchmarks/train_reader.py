"""Train the reader (gigcx/bot/reader.safetensors): does this passage answer this question?

Pairs come from quality_data.py (the example brands' cases and own wordings, CLINC150's val
split): each question with the best three topics the retrieval found, labelled 1 when the
topic answers it. To teach the reader to check the question's specifics, every answering pair
also gets a near-miss twin: the question's most specific word that the passage holds is swapped
for a term the brand's knowledge never mentions (a device, country, feature, number), with the
same passage, labelled 0.

Run: .venv/bin/python benchmarks/train_reader.py   (about 10 minutes on 2 cores; it runs the
cases first). train_answerability.py calls `train` for each brand left out.
"""

from __future__ import annotations

import asyncio
import random
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from gigcx.bot.answerability import READ_TOP
from gigcx.bot.reader import READER_FILE, READER_VERSION, ReaderNetwork, hit_text
from gigcx.knowledge.text import STOP_WORDS, stem

# Terms customers ask about that a brand's knowledge may lack, from many fields.
SWAP_TERMS = """HomeKit|Linux|Apple Watch|Chromebook|Xbox|Nintendo Switch|Brazil|Japan|Iceland|
South Africa|PayPal|Klarna|Bitcoin|Swahili|Finnish|Dolby Atmos|solar panel|fast charger|
roof rack|child seat|smart TV|Roku|Garmin|Strava|Zoom|Kindle|Sonos|Zigbee|Matter|NFC|eSIM|5G|
titanium|carbon fibre|pink|gold edition|wall mount|car adapter|Spotify|Tidal|Windows XP|
BlackBerry|fax|cheque|military discount|teacher discount|lifetime plan|gift wrapping|engraving|
student ID|pet mode|winter tyres|snow mode|offline maps|Apple Pay|Google Pay|Alipay|
airport lounge|Mexico|Norway|Korea|Arabic|Hindi|Braille|hearing aid|pacemaker|saltwater|sauna|
minus 20 degrees|200 kg|10 years|three devices|8K|120 Hz|wheelchair|Tesla|iPod|vinyl|Wear OS|
Fitbit|Alexa Show|Home Assistant|SmartThings|Philips Hue|Raspberry Pi|Steam Deck|PS4|Switzerland|
Greece|Portuguese|Korean|Tagalog|Venmo|Afterpay|cryptocurrency|gift card from a shop|
dishwasher|microwave|bluetooth 4.0|USB-A|Lightning|wireless charging pad|night mode|kids mode|
dark mode|API|Zapier|Outlook|two-factor authentication|fingerprint|face ID""".replace("\n", " ")
SWAPS = [term.strip() for term in SWAP_TERMS.split("|") if term.strip()]
WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]{3,}")


@dataclass(frozen=True)
class Pair:
    question: str
    passage: str
    label: int


def pairs_from(asked: list, knowledge_text: dict[str, str], seed: int = 5) -> list[Pair]:
    """Question-topic pairs from `quality_data.Asked` records, with near-miss twins."""
    rng = random.Random(seed)
    pairs: list[Pair] = []
    for record in asked:
        for hit, right in zip(record.hits[:READ_TOP], record.right[:READ_TOP], strict=False):
            label = int(right and record.expect == "answer")
            passage = hit_text(hit)
            pairs.append(Pair(record.question, passage, label))
            if label:
                brand = record.source.split(":")[0]
                twin = near_miss(record.question, passage, knowledge_text.get(brand, ""), rng)
                if twin is not None:
                    pairs.append(Pair(twin, passage, 0))
    return pairs


def near_miss(question: str, passage: str, knowledge: str, rng: random.Random) -> str | None:
    """`question` with its most specific word found in `passage` swapped for a term the
    knowledge never mentions; None when no word of the question is in the passage."""
    passage_stems = {stem(w) for w in WORD.findall(passage)}
    candidates = [
        w
        for w in WORD.findall(question)
        if w.lower() not in STOP_WORDS and stem(w) in passage_stems
    ]
    if not candidates:
        return None
    word = max(candidates, key=len)
    choices = [term for term in SWAPS if term.lower() not in knowledge]
    if not choices:
        return None
    return re.sub(rf"\b{re.escape(word)}\b", rng.choice(choices), question, count=1)


def train(pairs: list[Pair], out: Path, *, epochs: int = 2, seed: int = 3) -> None:
    """Fine-tune the reader on `pairs` and write its weights to `out`."""
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    network = ReaderNetwork()
    network.encoder.embeddings.requires_grad_(False)
    optimiser = torch.optim.AdamW(network.parameters_to_train(), lr=5e-5, weight_decay=0.01)
    positives = sum(p.label for p in pairs)
    weight = torch.tensor((len(pairs) - positives) / max(1, positives))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=weight)
    rng = random.Random(seed)
    batch_size = 16
    steps = epochs * ((len(pairs) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / 50) * max(0.0, 1 - step / steps)
    )
    network.encoder.train()
    started = time.perf_counter()
    for epoch in range(epochs):
        order = list(pairs)
        rng.shuffle(order)
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            encoded = network.encode([p.question for p in batch], [p.passage for p in batch])
            labels = torch.tensor([float(p.label) for p in batch])
            loss = loss_fn(network.logits(encoded), labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        print(
            f"  reader epoch {epoch + 1}/{epochs}: loss {total / len(order):.3f} "
            f"({time.perf_counter() - started:.0f} s, {len(pairs)} pairs, {positives} answer)"
        )
    save(network, out)


def save(network: ReaderNetwork, out: Path) -> None:
    from safetensors.torch import save_file

    state = {
        k: v.detach().to(torch.float16).contiguous() for k, v in network.trained_state().items()
    }
    save_file(state, str(out), metadata={"reader_version": str(READER_VERSION)})


async def main() -> None:
    import quality_data

    with tempfile.TemporaryDirectory(prefix="gigcx-reader-") as scratch:
        root = Path(scratch)
        runs = [
            await quality_data.run_brand(folder, root / folder.name)
            for folder in quality_data.brand_folders()
        ]
        clinc = quality_data.run_clinc(root / "clinc150")
    asked = [a for run in runs for a in (*run.asked, *run.wordings)] + clinc
    texts = {run.name: run.knowledge_text for run in runs}
    train(pairs_from(asked, texts), READER_FILE)
    print(f"wrote {READER_FILE.relative_to(quality_data.REPO)}")


if __name__ == "__main__":
    asyncio.run(main())
