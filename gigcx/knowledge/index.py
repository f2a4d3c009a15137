"""The vector index: each brand's chunks in Chroma, public and internal in two collections.

Each chunk carries its file's path and content hash. A new version of a file is written whole
before the old one is deleted, so a search sees an old or a new version of a file, never half.
Each collection records which embedding model built it and refuses vectors from another.
A process that reads a local index folder follows what other processes write to it.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.config import Settings as ChromaSettings

from gigcx.config import Settings
from gigcx.knowledge.documents import Audience, Chunk, KnowledgeDocument
from gigcx.knowledge.embeddings import Embedder, create_embedder
from gigcx.knowledge.retrieval import ChunkTable, Evidence, RankedPassage, StoredChunk, unit_of

MODEL_KEY = "gigcx_embedding_model"
SCHEMA_KEY = "gigcx_schema"
SCHEMA_VERSION = 1
GENERATION_CHECK_SECONDS = 1.0
AUDIENCES: tuple[Audience, ...] = ("public", "internal")
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
    rank_score: float = 0.0
    evidence: Evidence | None = field(default=None, repr=False, compare=False)

    @property
    def unit(self) -> str:
        """The topic this passage belongs to (a Markdown file, or one FAQ entry)."""
        return unit_of(self.path, self.section)

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
            "rank_score": round(self.rank_score, 4),
            "evidence": self.evidence.to_dict() if self.evidence else None,
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


def fresh_local_client(settings: Settings) -> ClientAPI:
    """A client on the index folder that shares nothing with the ones this process opened before.

    Chroma keeps one system per folder per process, with each collection's vector index in
    memory; a write by another process leaves that copy stale, and a new `PersistentClient`
    would be handed the same system back. Forgetting Chroma's cache makes the next client load
    the folder afresh; clients opened before keep working on their own system until dropped.
    """
    SharedSystemClient.clear_system_cache()
    return create_chroma_client(settings)


class KnowledgeIndex:
    """Chunks of one brand's knowledge in Chroma, searchable by meaning.

    Public and internal chunks live in two collections. A customer search only ever queries
    the public one, so internal knowledge cannot reach a customer through a missing filter.
    `fresh_client` opens a client that sees what other processes wrote (a local folder needs
    one; a Chroma server is always current).
    """

    def __init__(
        self,
        client: ClientAPI,
        brand: str,
        embedder: Embedder,
        location: str,
        fresh_client: Callable[[], ClientAPI] | None = None,
    ) -> None:
        self.client = client
        self.fresh_client = fresh_client
        self.brand = brand
        self.embedder = embedder
        self.location = location
        self.names: dict[Audience, str] = {
            "public": collection_name(brand),
            "internal": f"{collection_name(brand)}-internal",
        }
        self._collections: dict[Audience, Collection] = {}
        self._tables: dict[tuple[Audience, ...], ChunkTable] = {}
        # Guards the client, the collections and the copies read through them: searches run
        # in several threads while the client may be replaced.
        self._tables_lock = threading.RLock()
        self._checked_at = -GENERATION_CHECK_SECONDS
        self._generation_seen: str | None = None  # None: not read since the client opened
        self._notes: dict[str, dict[str, Any] | None] = {}

    # ------------------------------------------------------------ collections

    def _existing(self, audience: Audience) -> Collection | None:
        with self._tables_lock:
            if audience in self._collections:
                return self._collections[audience]
            try:
                collection = self.client.get_collection(self.names[audience])
            except Exception as error:  # NotFoundError, or ValueError on older servers
                if _is_not_found(error):
                    return None
                raise IndexUnavailable(
                    f"cannot open the knowledge index at {self.location}: {error}"
                ) from error
            self._check_model(collection)
            self._collections[audience] = collection
            return collection

    def _all_existing(self) -> list[Collection]:
        return [c for a in AUDIENCES if (c := self._existing(a)) is not None]

    def _writable(self, audience: Audience) -> Collection:
        with self._tables_lock:
            collection = self._existing(audience)
            if collection is None:
                collection = self.client.create_collection(
                    self.names[audience],
                    metadata={
                        "hnsw:space": "cosine",
                        MODEL_KEY: self.embedder.model_id,
                        SCHEMA_KEY: SCHEMA_VERSION,
                    },
                    embedding_function=None,
                )
                self._collections[audience] = collection
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

    def reset(self) -> None:
        """Drop every chunk and the recorded model: the next write starts a new index."""
        for name in [*self.names.values(), self._state_name]:
            try:
                self.client.delete_collection(name)
            except Exception as error:
                if not _is_not_found(error):
                    raise
        with self._tables_lock:
            self._collections.clear()
        self._changed()

    def count(self) -> int:
        return sum(collection.count() for collection in self._all_existing())

    def serving_generation(self) -> str:
        """The generation (one per sync that changed something) of the chunks searches are
        answered from, after following any sync run by another process; "" before any."""
        with self._tables_lock:
            self._table(("public",))
            return self._generation_seen or ""

    # ------------------------------------------------------------ files

    def file_versions(self) -> dict[str, set[str]]:
        """Path -> content hashes stored for it (more than one only after an interrupted write)."""
        versions: dict[str, set[str]] = defaultdict(set)
        for collection in self._all_existing():
            rows = collection.get(where={"position": 0}, include=["metadatas"])
            for metadata in rows["metadatas"] or []:
                versions[str(metadata["path"])].add(str(metadata["file_hash"]))
        return dict(versions)

    def write_documents(
        self, documents: Sequence[KnowledgeDocument], vectors: Sequence[Sequence[float]]
    ) -> None:
        """Store these files' chunks, then drop any other version of the same files."""
        rows: dict[Audience, _Rows] = {audience: _Rows() for audience in AUDIENCES}
        chunks = [(document, chunk) for document in documents for chunk in document.chunks]
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        for (document, chunk), vector in zip(chunks, vectors, strict=True):
            target = rows[chunk.audience]
            target.ids.append(f"{document.path}::{document.content_hash[:16]}::{chunk.position}")
            target.embeddings.append(list(vector))
            target.metadatas.append(_chunk_metadata(chunk, document.content_hash))
        limit = self.client.get_max_batch_size()
        for audience, batch in rows.items():
            for start in range(0, len(batch.ids), limit):
                end = start + limit
                self._writable(audience).upsert(
                    ids=batch.ids[start:end],
                    embeddings=batch.embeddings[start:end],  # type: ignore[arg-type]
                    metadatas=batch.metadatas[start:end],  # type: ignore[arg-type]
                )
        for document in documents:
            self._delete_other_versions(document.path, document.content_hash)
        self._changed()

    def keep_only_version(self, path: str, file_hash: str) -> None:
        """Drop every stored version of `path` but `file_hash` (old ones, interrupted writes)."""
        self._delete_other_versions(path, file_hash)
        self._changed()

    def _delete_other_versions(self, path: str, file_hash: str) -> None:
        for collection in self._all_existing():
            collection.delete(where={"$and": [{"path": path}, {"file_hash": {"$ne": file_hash}}]})

    def public_files(self, paths: Iterable[str]) -> set[str]:
        """Those of `paths` that have chunks a customer search can find."""
        paths = list(paths)
        collection = self._existing("public")
        if not paths or collection is None:
            return set()
        rows = collection.get(where={"path": {"$in": paths}}, include=["metadatas"])
        return {str(metadata["path"]) for metadata in rows["metadatas"] or []}

    def remove_files(self, paths: Iterable[str]) -> None:
        paths = list(paths)
        if not paths:
            return
        for collection in self._all_existing():
            collection.delete(where={"path": {"$in": paths}})
        self._changed()

    # ------------------------------------------------------------ the in-memory copy

    @property
    def _state_name(self) -> str:
        """A small collection of records about the index: its generation, its notes."""
        return f"{collection_name(self.brand)}-state"

    def public_wordings(self) -> list[StoredChunk]:
        """The customer wordings of the public knowledge (for calibration)."""
        return self._table(("public",)).wordings()

    def write_note(self, key: str, value: dict[str, Any]) -> None:
        """Keep a small JSON record with the index (e.g. the brand's calibration), for every
        process that opens it, a Chroma server included."""
        try:
            notes = self.client.get_or_create_collection(self._state_name, embedding_function=None)
            notes.upsert(ids=[key], embeddings=[[0.0]], metadatas=[{"value": json.dumps(value)}])
        except Exception as error:
            raise IndexUnavailable(
                f"cannot write to the knowledge index at {self.location}: {error}"
            ) from error
        self._changed()  # every process re-reads its notes

    def note(self, key: str) -> dict[str, Any] | None:
        """A record kept with `write_note`; re-read when the index changes."""
        self._table(("public",))  # checks the generation, which clears the notes it outdates
        with self._tables_lock:
            if key not in self._notes:
                self._notes[key] = self._read_note(key)
            return self._notes[key]

    def _read_note(self, key: str) -> dict[str, Any] | None:
        try:
            notes = self.client.get_collection(self._state_name)
            rows = notes.get(ids=[key], include=["metadatas"])
        except Exception as error:
            if _is_not_found(error):
                return None
            raise IndexUnavailable(
                f"cannot open the knowledge index at {self.location}: {error}"
            ) from error
        metadatas = rows["metadatas"] or []
        if not metadatas:
            return None
        try:
            value = json.loads(str(metadatas[0].get("value", "")))
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _changed(self) -> None:
        """Record that the chunks changed, for this process and for every other one."""
        generation = uuid.uuid4().hex
        with self._tables_lock:
            self._tables.clear()
            self._notes.clear()
            self._generation_seen = generation  # this process reloads once, not twice
        try:
            generations = self.client.get_or_create_collection(
                self._state_name, embedding_function=None
            )
            generations.upsert(
                ids=["generation"], embeddings=[[0.0]], metadatas=[{"value": generation}]
            )
        except Exception as error:
            raise IndexUnavailable(
                f"cannot write to the knowledge index at {self.location}: {error}"
            ) from error

    def _generation(self) -> str:
        try:
            generations = self.client.get_collection(self._state_name)
            rows = generations.get(ids=["generation"], include=["metadatas"])
        except Exception as error:
            if _is_not_found(error):
                return ""
            raise IndexUnavailable(
                f"cannot open the knowledge index at {self.location}: {error}"
            ) from error
        metadatas = rows["metadatas"] or []
        return str(metadatas[0].get("value", "")) if metadatas else ""

    def _table(self, audiences: tuple[Audience, ...]) -> ChunkTable:
        """The chunks of these audiences in memory, reloaded when the index has changed
        (here, or by a sync in another process: checked at most once a second)."""
        with self._tables_lock:
            try:
                return self._current_table(audiences)
            except IndexUnavailable:
                if self.fresh_client is None:
                    raise
                # Another process may have written since the last check (or between that
                # check and a write of ours), leaving this client stale: start afresh, once.
                self._reopen()
                try:
                    return self._current_table(audiences)
                except IndexUnavailable as error:
                    raise IndexUnavailable(
                        f"{error} (again with a fresh client: let a running `gigcx knowledge "
                        "sync` finish, or rebuild with `gigcx knowledge sync --rebuild`)"
                    ) from error

    def _current_table(self, audiences: tuple[Audience, ...]) -> ChunkTable:
        self._follow_other_processes()
        table = self._tables.get(audiences)
        if table is None:
            table = self._tables[audiences] = self._load_table(audiences)
        return table

    def _follow_other_processes(self) -> None:
        """Forget what was read before if the index changed since (checked at most once a
        second). Call with `_tables_lock` held."""
        moment = time.monotonic()
        if moment - self._checked_at < GENERATION_CHECK_SECONDS:
            return
        generation = self._generation()
        if generation != self._generation_seen:
            if self._generation_seen is not None and self.fresh_client is not None:
                # Not our write (ours record their generation): another process's. This
                # client's copy of the vectors misses it ("Error finding id" on reading).
                self._reopen()
            self._generation_seen = generation
            self._tables.clear()
            self._notes.clear()
        self._checked_at = moment

    def _reopen(self) -> None:
        """Replace the client with a fresh one and forget all read through the old one.
        Call with `_tables_lock` held."""
        assert self.fresh_client is not None
        self.client = self.fresh_client()
        self._collections.clear()
        self._tables.clear()
        self._notes.clear()
        self._generation_seen = None
        self._checked_at = -GENERATION_CHECK_SECONDS

    def _load_table(self, audiences: tuple[Audience, ...]) -> ChunkTable:
        chunks: list[StoredChunk] = []
        vectors: list[Any] = []
        for audience in audiences:
            collection = self._existing(audience)
            if collection is None:
                continue
            try:
                rows = collection.get(include=["embeddings", "metadatas"])
            except Exception as error:
                raise IndexUnavailable(
                    f"cannot read the knowledge index at {self.location}: {error}"
                ) from error
            for metadata, vector in zip(
                rows["metadatas"] or [],
                rows["embeddings"] if rows["embeddings"] is not None else [],
                strict=True,
            ):
                chunks.append(StoredChunk.from_metadata(metadata))
                vectors.append(vector)
        matrix = np.asarray(vectors, dtype=np.float32) if vectors else np.zeros((0, 1))
        return ChunkTable(chunks, matrix)

    # ------------------------------------------------------------ search

    def search(
        self,
        query: str,
        limit: int = 5,
        *,
        include_internal: bool = False,
        product: str | None = None,
        ignore_terms: Iterable[str] = (),
        vector: Sequence[float] | None = None,
        leave_out: str | None = None,
    ) -> list[SearchHit]:
        """The best passage of each of the files that best answer `query`, best first.

        Files are ranked by meaning and by words, fused by rank; the passage shown is the
        section of the file that answers. Customer-facing callers leave `include_internal`
        off: then internal chunks are never even loaded for the search. `vector` is the
        query's embedding when the caller already has it.
        """
        existing = self._all_existing()
        if not existing:
            raise IndexNotBuilt(
                f"no knowledge index for brand '{self.brand}' at {self.location} yet: "
                "run `gigcx knowledge sync` first"
            )
        if not query.strip():
            return []
        audiences: tuple[Audience, ...] = AUDIENCES if include_internal else ("public",)
        table = self._table(audiences)
        if not len(table):
            return []
        if vector is None:
            vector = self.embedder.embed_query(query)
        ranked = table.search(
            vector, query, limit, product=product, ignore_terms=ignore_terms, leave_out=leave_out
        )
        return [_hit(passage) for passage in ranked]


@dataclass
class _Rows:
    ids: list[str] = field(default_factory=list)
    embeddings: list[list[float]] = field(default_factory=list)
    metadatas: list[dict[str, Any]] = field(default_factory=list)


def _is_not_found(error: Exception) -> bool:
    return "does not exist" in str(error) or type(error).__name__ == "NotFoundError"


def _chunk_metadata(chunk: Chunk, file_hash: str) -> dict[str, Any]:
    # Every key costs write time in Chroma: empty ones are left out, and the embedded text is
    # not stored (only a question's wording, to show what matched).
    metadata: dict[str, Any] = {
        "path": chunk.path,
        "file_hash": file_hash,
        "position": chunk.position,
        "kind": chunk.kind,
        "title": chunk.title,
        "section": chunk.section,
        "answer": chunk.answer,
        "audience": chunk.audience,
    }
    optional = {
        "question": chunk.embed_text if chunk.kind == "question" else "",
        "product": chunk.product or "",
        "tags": ",".join(chunk.tags),
        "url": chunk.url or "",
    }
    metadata.update({key: value for key, value in optional.items() if value})
    return metadata


def _hit(passage: RankedPassage) -> SearchHit:
    chunk = passage.chunk
    return SearchHit(
        score=passage.score,
        path=chunk.path,
        title=chunk.title,
        section=chunk.section,
        text=chunk.answer,
        matched=passage.matched,
        kind=chunk.kind,
        audience=chunk.audience,
        product=chunk.product,
        tags=chunk.tags,
        url=chunk.url,
        rank_score=passage.rank_score,
        evidence=passage.evidence,
    )


def open_index(settings: Settings, embedder: Embedder | None = None) -> KnowledgeIndex:
    """The brand's knowledge index as configured (folder or server, and embedding model)."""
    client = create_chroma_client(settings)
    location = settings.index.url or str(Path(settings.index.path))
    fresh_client = None if settings.index.url else partial(fresh_local_client, settings)
    embedder = embedder or create_embedder(settings.embeddings)
    return KnowledgeIndex(client, settings.brand, embedder, location, fresh_client)
