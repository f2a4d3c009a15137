"""The OpenAI-compatible embeddings backend against a local server speaking that protocol,
and the index refusing to mix vectors of two models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gigcx.cli import app
from gigcx.config import load_settings
from gigcx.knowledge import IndexModelMismatch, open_index, sync_knowledge
from gigcx.knowledge.documents import ChunkingOptions
from tests.helpers.openai_server import OpenAIEmbeddingsServer

runner = CliRunner()


def use_openai(brand_dir: Path, base_url: str) -> Path:
    config = brand_dir / "gigcx.yaml"
    config.write_text(
        config.read_text().replace(
            "backend: local",
            "backend: openai\n  model: test-embed-1\n"
            f"  base_url: {base_url}\n  api_key: sk-test-123",
        )
    )
    return config


def test_sync_and_search_through_an_openai_compatible_endpoint(brand_dir: Path) -> None:
    with OpenAIEmbeddingsServer() as server:
        settings = load_settings(use_openai(brand_dir, server.base_url))
        index = open_index(settings)
        options = ChunkingOptions()

        report = sync_knowledge(settings.knowledge.path, index, options)

        assert report.ok and len(report.added) == 21
        assert index.embedder.model_id == "openai:test-embed-1"
        hit = index.search("what is the warranty for products bought in the EU", 1)[0]
        assert hit.path == "general/warranty.md"
        bodies = [r["body"] for r in server.requests]
        assert all(body["model"] == "test-embed-1" for body in bodies)
        assert all(r["auth"] == "Bearer sk-test-123" for r in server.requests)
        # Plain text goes to the server (no tiktoken token ids, which need a download).
        assert isinstance(bodies[0]["input"][0], str)


def test_an_index_built_by_one_model_refuses_another_until_rebuilt(brand_dir: Path) -> None:
    config = brand_dir / "gigcx.yaml"
    assert runner.invoke(app, ["knowledge", "sync", "-c", str(config)]).exit_code == 0

    with OpenAIEmbeddingsServer() as server:
        use_openai(brand_dir, server.base_url)
        settings = load_settings(config)
        with pytest.raises(IndexModelMismatch, match="--rebuild"):
            open_index(settings).search("warranty", 1)

        refused = runner.invoke(app, ["knowledge", "sync", "-c", str(config)])
        assert refused.exit_code == 2
        message = " ".join(refused.output.split())
        assert "built with embedding model 'local:all-MiniLM-L6-v2'" in message
        assert "'openai:test-embed-1'" in message and "--rebuild" in message

        rebuilt = runner.invoke(
            app, ["knowledge", "sync", "-c", str(config), "--rebuild", "--json"]
        )
        assert rebuilt.exit_code == 0
        assert json.loads(rebuilt.output)["counts"]["added"] == 21
        search = runner.invoke(
            app, ["knowledge", "search", "-c", str(config), "--json", "warranty"]
        )
        assert json.loads(search.output)["hits"][0]["path"] == "general/warranty.md"


def test_a_failing_endpoint_is_reported_and_the_index_keeps_what_it_had(brand_dir: Path) -> None:
    with OpenAIEmbeddingsServer() as server:
        config = use_openai(brand_dir, server.base_url)
        assert runner.invoke(app, ["knowledge", "sync", "-c", str(config)]).exit_code == 0
    (brand_dir / "knowledge" / "new.md").write_text("# New\n\nGift cards never expire.\n")

    with OpenAIEmbeddingsServer(fail_with=500) as broken:
        use_openai_again = config.read_text().replace(server.base_url, broken.base_url)
        config.write_text(use_openai_again)
        result = runner.invoke(app, ["knowledge", "sync", "-c", str(config), "--json"])

    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["counts"]["failed"] == 1 and report["failed"][0]["path"] == "new.md"
    assert "embeddings endpoint failed" in report["failed"][0]["error"]
    assert report["chunks_total"] > 100  # nothing already stored was lost


def test_queries_asked_at_once_are_embedded_as_one_batch_with_the_same_vectors():
    from concurrent.futures import ThreadPoolExecutor

    from gigcx.knowledge.embeddings import LocalEmbedder, QueryBatcher

    class Counting(LocalEmbedder):
        def __init__(self) -> None:
            super().__init__("all-MiniLM-L6-v2")
            self.calls: list[int] = []

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            self.calls.append(len(texts))
            return super().embed_documents(texts)

    model = Counting()
    batcher = QueryBatcher(model)
    texts = [f"how do I pair headset number {n}?" for n in range(24)]
    with ThreadPoolExecutor(max_workers=24) as pool:
        vectors = list(pool.map(batcher.embed_query, texts))
    alone = [LocalEmbedder("all-MiniLM-L6-v2").embed_query(text) for text in texts]
    for batched, single in zip(vectors, alone, strict=True):
        assert max(abs(a - b) for a, b in zip(batched, single, strict=True)) < 1e-4
    assert sum(model.calls) == 24 and len(model.calls) < 24  # some went to the model together


def test_a_query_is_answered_while_others_keep_arriving():
    """Under a steady surge the queue of queries never empties: the caller that embeds must
    still get back to its own customer as soon as its own query is done."""
    import itertools
    import threading
    import time

    from gigcx.knowledge.embeddings import QueryBatcher

    class Slow:
        model_id = "slow"

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            time.sleep(0.02)  # one batch through the model
            return [[float(len(text))] for text in texts]

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    batcher = QueryBatcher(Slow())
    stop = threading.Event()
    answered: list[float] = []

    def mine() -> None:  # asked first, so it is the one that embeds
        asked = time.monotonic()
        assert batcher.embed_query("mine") == [4.0]
        answered.append(time.monotonic() - asked)

    def surge() -> None:  # then a new customer every 5 ms, each on a thread of its own
        for n in itertools.count():
            if stop.is_set():
                return
            asked = f"another {n}"
            threading.Thread(target=batcher.embed_query, args=(asked,), daemon=True).start()
            time.sleep(0.005)

    first = threading.Thread(target=mine)
    first.start()
    time.sleep(0.005)
    threading.Thread(target=surge, daemon=True).start()
    first.join(timeout=5)
    stop.set()
    assert answered and answered[0] < 0.5  # its own batch, not the rest of the surge


class _Recording:
    """A model that records what it was asked to embed; `fail` makes the next batch fail."""

    model_id = "recording"

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.batches: list[list[str]] = []
        self.fail = False

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        import time

        self.batches.append(list(texts))
        time.sleep(self.seconds)
        if self.fail:
            self.fail = False
            raise RuntimeError("the model fell over")
        return [[float(len(text)), 0.5] for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def test_a_text_embedded_lately_is_not_embedded_again():
    """A turn embeds the message for its meaning, searches for it, and an escalation searches
    again for the expert's packet: the model sees the text once."""
    from gigcx.knowledge.embeddings import QueryBatcher

    model = _Recording()
    batcher = QueryBatcher(model, remembered=2)
    first = batcher.embed_query("my headset will not pair")
    first.append(99.0)  # a caller changing its copy changes nobody else's
    assert batcher.embed_query("my headset will not pair") == [24.0, 0.5]
    assert batcher.embed_documents(["my headset will not pair", "and it hisses"]) == [
        [24.0, 0.5],
        [13.0, 0.5],
    ]
    assert model.batches == [["my headset will not pair"], ["and it hisses"]]
    batcher.embed_query("a third text")  # only the last two are kept
    batcher.embed_query("my headset will not pair")
    assert model.batches[-1] == ["my headset will not pair"]


def test_identical_questions_asked_at_once_go_to_the_model_once():
    from concurrent.futures import ThreadPoolExecutor

    from gigcx.knowledge.embeddings import QueryBatcher

    model = _Recording(seconds=0.05)
    batcher = QueryBatcher(model)
    asked = ["are tickets on sale yet?"] * 20 + ["is the venue step-free?"] * 20
    with ThreadPoolExecutor(max_workers=40) as pool:
        vectors = list(pool.map(batcher.embed_query, asked))
    assert vectors == [[24.0, 0.5]] * 20 + [[23.0, 0.5]] * 20
    embedded = [text for batch in model.batches for text in batch]
    assert sorted(embedded) == ["are tickets on sale yet?", "is the venue step-free?"]


def test_a_failed_batch_fails_its_callers_and_is_not_remembered():
    import pytest

    from gigcx.knowledge.embeddings import QueryBatcher

    model = _Recording()
    batcher = QueryBatcher(model)
    model.fail = True
    with pytest.raises(RuntimeError, match="fell over"):
        batcher.embed_query("where is my order?")
    assert batcher.embed_query("where is my order?") == [18.0, 0.5]  # asked again, embedded
    assert len(model.batches) == 2


def test_a_bad_vector_fails_every_caller_of_its_batch_and_nothing_hangs():
    import contextlib
    from concurrent.futures import ThreadPoolExecutor

    import pytest

    from gigcx.knowledge.embeddings import QueryBatcher

    class Garbled(_Recording):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            vectors = super().embed_documents(texts)
            garbled = [
                ["not a number"] if "b" in text else vector
                for text, vector in zip(texts, vectors, strict=True)
            ]
            return garbled  # type: ignore[return-value]

    batcher = QueryBatcher(Garbled(seconds=0.05))
    with ThreadPoolExecutor(max_workers=6) as pool:
        asked = [pool.submit(batcher.embed_query, text) for text in ("a", "b", "c", "b", "c", "a")]
        for future in asked:
            with contextlib.suppress(ValueError):  # an answer or an error, never a wait for ever
                future.result(timeout=10)
    with pytest.raises(ValueError):
        batcher.embed_query("b")  # asked again: embedded again, not left waiting


def test_a_model_that_returns_too_few_vectors_fails_every_caller_of_the_batch():
    from concurrent.futures import ThreadPoolExecutor

    import pytest

    from gigcx.knowledge.embeddings import EmbeddingError, QueryBatcher

    class Short(_Recording):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return super().embed_documents(texts)[:-1]

    batcher = QueryBatcher(Short(seconds=0.05))
    with ThreadPoolExecutor(max_workers=8) as pool:
        asked = [pool.submit(batcher.embed_query, f"question {n}") for n in range(8)]
        for future in asked:  # each one fails: none of them waits for ever
            with pytest.raises(EmbeddingError, match="vectors for"):
                future.result(timeout=10)


def test_a_sync_s_many_documents_go_to_the_model_as_they_are():
    from gigcx.knowledge.embeddings import QueryBatcher

    model = _Recording()
    batcher = QueryBatcher(model, max_batch=4)
    texts = [f"section {n}" for n in range(10)]
    assert len(batcher.embed_documents(texts)) == 10
    assert model.batches == [texts]
