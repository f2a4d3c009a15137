"""The vector index: one Chroma collection per brand, holding every chunk of every good file.

Each chunk carries its file's path and content hash. A new version of a file is written whole
before the old one is deleted, so a search sees an old or a new version of a file, never half.
The collection records which embedding model built it and refuses vectors from another.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings

from gigcx.config import Settings
from gigcx.knowledge.documents import Chunk, KnowledgeDocument
from gigcx.knowledge.embeddings import Embedder, create_embedder

MODEL_KEY = "gigcx_embedding_model"
SCHEMA_KEY = "gigcx_schema"
SCHEMA_VERSION = 1
_MARKDOWN_MARKERS = re.compile(r"^#{1,6}[ \t]+|\*\*|__|`", re.MULTILINE)


class KnowledgeIndexError(Exception):
    """Base for index problems a user can act on."""


class IndexModelMismatch(KnowledgeIndexError):
    """The index was built by another embedding model than the one configured."""


class IndexNotBuilt(KnowledgeIndexError):
    """Nothing has been synced for this brand yet."""


class IndexUnavailable(KnowledgeIndexError):
    """The Chroma folder or server cannot be opened."""


@dataclass(frozen=True)
class SearchHit:
    """One knowledge passage that matches a query, best first."""

    score: float
    path: str
    title: str
    section: str
    text: str
    matched: str
    kind: str
    audience: str
    product: str | None
    tags: tuple[str, ...]
    url: str | None

    @property
    def snippet(self) -> str:
        """The passage on one line, Markdown markers removed, cut to about 160 characters."""
        plain = _MARKDOWN_MARKERS.sub("", self.text)
        flat = " ".join(plain.split())
        return flat if len(flat) <= 160 else flat[:157].rstrip() + "..."

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "path": self.path,
            "title": self.title,
            "section": self.section,
            "snippet": self.snippet,
            "text": self.text,
            "matched": self.matched,
            "kind": self.kind,
            "audience": self.audience,
            "product": self.product,
            "tags": list(self.tags),
            "url": self.url,
        }


def collection_name(brand: str) -> str:
    return f"gigcx-{brand}"


def create_chroma_client(settings: Settings) -> ClientAPI:
    """A Chroma client: a server when `index.url` is set, else a folder on disk."""
    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    try:
        if settings.index.url:
            url = urlparse(settings.index.url)
            return chromadb.HttpClient(
                host=url.hostname or "127.0.0.1",
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
        settings.index.path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.index.path), settings=chroma_settings)
    except Exception as error:
        where = settings.index.url or settings.index.path
        raise IndexUnavailable(f"cannot open the knowledge index at {where}: {error}") from error


class KnowledgeIndex:
    """Chunks of one brand's knowledge in a Chroma collection, searchable by meaning."""

    def __init__(self, client: ClientAPI, brand: str, embedder: Embedder, location: str) -> None:
        self.client = client
        self.brand = brand
        self.embedder = embedder
        self.location = location
        self.name = collection_name(brand)
        self._collection: Collection | None = None

    # ------------------------------------------------------------ collection

    def _existing(self) -> Collection | None:
        if self._collection is not None:
            return self._collection
        try:
            collection = self.client.get_collection(self.name)
        except Exception as error:  # Chroma raises NotFoundError, or ValueError on older servers
            if "does not exist" in str(error) or type(error).__name__ == "NotFoundError":
                return None
            raise IndexUnavailable(
                f"cannot open the knowledge index at {self.location}: {error}"
            ) from error
        self._check_model(collection)
        self._collection = collection
        return collection

    def _writable(self) -> Collection:
        collection = self._existing()
        if collection is None:
            collection = self.client.create_collection(
                self.name,
                metadata={
                    "hnsw:space": "cosine",
                    MODEL_KEY: self.embedder.model_id,
                    SCHEMA_KEY: SCHEMA_VERSION,
                },
                embedding_function=None,
            )
            self._collection = collection
        return collection

    def _check_model(self, collection: Collection) -> None:
        built_with = (collection.metadata or {}).get(MODEL_KEY)
        if built_with != self.embedder.model_id:
            raise IndexModelMismatch(
                f"the knowledge index for brand '{self.brand}' at {self.location} was built with "
                f"embedding model '{built_with}', but the configuration asks for "
                f"'{self.embedder.model_id}'. Vectors of two models cannot be mixed: "
                "re-sync with `gigcx knowledge sync --rebuild`."
            )

    @property
    def built_with(self) -> str | None:
        """The embedding model recorded in the index, without checking it."""
        try:
            collection = self.client.get_collection(self.name)
        except Exception:
            return None
        return (collection.metadata or {}).get(MODEL_KEY)

    def exists(self) -> bool:
        return self._existing() is not None

    def reset(self) -> None:
        """Drop every chunk and the recorded model: the next write starts a new index."""
        try:
            self.client.delete_collection(self.name)
        except Exception as error:
            if "does not exist" not in str(error) and type(error).__name__ != "NotFoundError":
                raise
        self._collection = None

    def count(self) -> int:
        collection = self._existing()
        return collection.count() if collection is not None else 0

    # ------------------------------------------------------------ files

    def file_versions(self) -> dict[str, set[str]]:
        """Path -> content hashes stored for it (more than one only after an interrupted write)."""
        collection = self._existing()
        if collection is None:
            return {}
        rows = collection.get(where={"position": 0}, include=["metadatas"])
        versions: dict[str, set[str]] = defaultdict(set)
        for metadata in rows["metadatas"] or []:
            versions[str(metadata["path"])].add(str(metadata["file_hash"]))
        return dict(versions)

    def write_documents(
        self, documents: Sequence[KnowledgeDocument], vectors: Sequence[Sequence[float]]
    ) -> None:
        """Store these files' chunks, then drop any other version of the same files."""
        collection = self._writable()
        ids: list[str] = []
        texts: list[str] = []
        metadatas: list[dict[str, Any]] = []
        for document in documents:
            for chunk in document.chunks:
                ids.append(f"{document.path}::{document.content_hash[:16]}::{chunk.position}")
                texts.append(chunk.embed_text)
                metadatas.append(_chunk_metadata(chunk, document.content_hash))
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} chunks but {len(vectors)} vectors")
        limit = self.client.get_max_batch_size()
        for start in range(0, len(ids), limit):
            end = start + limit
            collection.upsert(
                ids=ids[start:end],
                embeddings=[list(v) for v in vectors[start:end]],
                documents=texts[start:end],
                metadatas=metadatas[start:end],  # type: ignore[arg-type]
            )
        for document in documents:
            collection.delete(
                where={
                    "$and": [{"path": document.path}, {"file_hash": {"$ne": document.content_hash}}]
                }
            )

    def keep_only_version(self, path: str, file_hash: str) -> None:
        """Drop leftovers of an interrupted write, keeping the version `file_hash`."""
        collection = self._writable()
        collection.delete(where={"$and": [{"path": path}, {"file_hash": {"$ne": file_hash}}]})

    def remove_files(self, paths: Iterable[str]) -> None:
        collection = self._existing()
        paths = list(paths)
        if collection is None or not paths:
            return
        collection.delete(where={"path": {"$in": paths}})

    # ------------------------------------------------------------ search

    def search(
        self,
        query: str,
        limit: int = 5,
        *,
        include_internal: bool = False,
        product: str | None = None,
    ) -> list[SearchHit]:
        """The passages that best answer `query`, best first, one hit per passage.

        Customer-facing callers leave `include_internal` off: internal chunks are then
        filtered out inside the index query, never after it.
        """
        collection = self._existing()
        if collection is None:
            raise IndexNotBuilt(
                f"no knowledge index for brand '{self.brand}' at {self.location} yet: "
                "run `gigcx knowledge sync` first"
            )
        if not query.strip():
            return []
        conditions: list[dict[str, Any]] = []
        if not include_internal:
            conditions.append({"audience": "public"})
        if product:
            conditions.append({"product": product})
        where: dict[str, Any] | None = None
        if len(conditions) == 1:
            where = conditions[0]
        elif conditions:
            where = {"$and": conditions}
        vector = self.embedder.embed_query(query)
        # Questions and sections of one passage can both match: ask for more and fold them.
        result = collection.query(
            query_embeddings=[vector],
            n_results=max(limit * 4, 10),
            where=where,
            include=["metadatas", "distances", "documents"],
        )
        hits: list[SearchHit] = []
        # One hit per passage: a question and the section it answers fold into the better one.
        seen: set[tuple[str, str]] = set()
        metadatas = (result["metadatas"] or [[]])[0]
        distances = (result["distances"] or [[]])[0]
        documents = (result["documents"] or [[]])[0]
        for metadata, distance, matched in zip(metadatas, distances, documents, strict=True):
            key = (str(metadata["path"]), str(metadata["section"]))
            if key in seen:
                continue
            seen.add(key)
            hits.append(_hit(metadata, 1.0 - float(distance), matched or ""))
            if len(hits) == limit:
                break
        return hits


def _chunk_metadata(chunk: Chunk, file_hash: str) -> dict[str, Any]:
    return {
        "path": chunk.path,
        "file_hash": file_hash,
        "position": chunk.position,
        "kind": chunk.kind,
        "title": chunk.title,
        "section": chunk.section,
        "answer": chunk.answer,
        "audience": chunk.audience,
        "product": chunk.product or "",
        "tags": ",".join(chunk.tags),
        "url": chunk.url or "",
    }


def _hit(metadata: Any, score: float, matched: str) -> SearchHit:
    tags = str(metadata.get("tags") or "")
    return SearchHit(
        score=score,
        path=str(metadata["path"]),
        title=str(metadata["title"]),
        section=str(metadata["section"]),
        text=str(metadata["answer"]),
        matched=matched,
        kind=str(metadata["kind"]),
        audience=str(metadata["audience"]),
        product=str(metadata.get("product") or "") or None,
        tags=tuple(tag for tag in tags.split(",") if tag),
        url=str(metadata.get("url") or "") or None,
    )


def open_index(settings: Settings, embedder: Embedder | None = None) -> KnowledgeIndex:
    """The brand's knowledge index as configured (folder or server, and embedding model)."""
    client = create_chroma_client(settings)
    location = settings.index.url or str(Path(settings.index.path))
    return KnowledgeIndex(
        client, settings.brand, embedder or create_embedder(settings.embeddings), location
    )
