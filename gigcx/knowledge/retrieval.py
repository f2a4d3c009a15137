"""Hybrid retrieval over one brand's chunks: meaning (cosine on the stored vectors) and words
(BM25), fused by rank, then folded into one passage per file with the section that answers.

The chunks live in Chroma; a `ChunkTable` is an in-memory copy of one brand's chunks (their
vectors, fields and words), loaded from Chroma and replaced when the index changes. Holding it
in memory makes both kinds of search, and the evidence the bot weighs, one NumPy pass.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gigcx.knowledge.documents import FAQ_SUFFIXES
from gigcx.knowledge.terms import terms

if TYPE_CHECKING:
    import bm25s

# Reciprocal rank fusion constant (Cormack et al. 2009): ranks beyond ~k count little.
RRF_K = 20
CANDIDATES = 60
# How much the share of the question's words found in a section counts, beside its cosine,
# when choosing which section of a file to quote.
SECTION_WORD_WEIGHT = 0.5


def unit_of(path: str, section: str) -> str:
    """What answers as a whole: a Markdown file (one topic), or one entry of an FAQ file."""
    if path.lower().endswith(FAQ_SUFFIXES):
        return f"{path}#{section}"
    return path


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as stored in the index (its Chroma metadata)."""

    path: str
    kind: str  # "section" | "question"
    title: str
    section: str
    answer: str
    question: str
    audience: str
    product: str | None
    tags: tuple[str, ...]
    url: str | None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> StoredChunk:
        tags = str(metadata.get("tags") or "")
        return cls(
            path=str(metadata["path"]),
            kind=str(metadata["kind"]),
            title=str(metadata["title"]),
            section=str(metadata["section"]),
            answer=str(metadata["answer"]),
            question=str(metadata.get("question") or ""),
            audience=str(metadata["audience"]),
            product=str(metadata.get("product") or "") or None,
            tags=tuple(tag for tag in tags.split(",") if tag),
            url=str(metadata.get("url") or "") or None,
        )

    @property
    def unit(self) -> str:
        return unit_of(self.path, self.section)

    @property
    def words_text(self) -> str:
        """What the word index reads for this chunk."""
        if self.kind == "question":
            return f"{self.question}\n{self.title}"
        return f"{self.title}\n{self.section}\n{self.answer}"


@dataclass(frozen=True)
class Evidence:
    """What the retrieval found for one file, as numbers the answer decision weighs."""

    dense: float  # best cosine of any chunk of the file
    section_dense: float  # cosine of the quoted section
    question_dense: float  # best cosine of a `questions:` / FAQ wording of the file (0: none)
    lexical: float  # best BM25 of a chunk of the file, over the best BM25 of any chunk
    coverage: float  # IDF-weighted share of the question's words found in the file
    section_coverage: float  # ... found in the quoted section (with its title)
    missing_specific: float  # how specific the most specific question word the file lacks is
    # (its IDF over the highest possible IDF; 0: the file has every word)
    unknown: float  # IDF-weighted share of the question's words found nowhere in the knowledge
    dense_rank: int  # the file's rank by meaning alone (0 = first)
    lexical_rank: int  # the file's rank by words alone (0 = first; CANDIDATES: not found)
    query_terms: int  # how many content words the question has

    def to_dict(self) -> dict[str, float | int]:
        return {
            key: round(value, 4) if isinstance(value, float) else value
            for key, value in self.__dict__.items()
        }


@dataclass(frozen=True)
class RankedPassage:
    """One file's best passage for a query: the chunk to show and the evidence for the file."""

    chunk: StoredChunk
    score: float  # cosine of the best chunk of the file (0-1)
    rank_score: float  # fused rank score the files are ordered by
    matched: str  # what matched: a question's wording, or the section's heading
    evidence: Evidence


@dataclass
class ChunkTable:
    """An in-memory copy of one brand's chunks: vectors, fields and a word index."""

    chunks: list[StoredChunk]
    vectors: np.ndarray  # (n, dim), unit length
    _by_unit: dict[str, list[int]] = field(default_factory=dict, init=False)
    _units: list[str] = field(default_factory=list, init=False)  # each chunk's unit
    _chunk_terms: list[frozenset[str]] = field(default_factory=list, init=False)
    _unit_terms: dict[str, frozenset[str]] = field(default_factory=dict, init=False)
    _idf: dict[str, float] = field(default_factory=dict, init=False)
    _max_idf: float = field(default=1.0, init=False)
    _bm25: bm25s.BM25 | None = field(default=None, init=False)
    _products: np.ndarray = field(default_factory=lambda: np.array([]), init=False)

    def __post_init__(self) -> None:
        if len(self.vectors):
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self.vectors = (self.vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        self._products = np.array([chunk.product or "" for chunk in self.chunks], dtype=object)
        tokenised = [terms(chunk.words_text) for chunk in self.chunks]
        self._chunk_terms = [frozenset(words) for words in tokenised]
        unit_terms: dict[str, set[str]] = defaultdict(set)
        self._units = [chunk.unit for chunk in self.chunks]
        for number, unit in enumerate(self._units):
            self._by_unit.setdefault(unit, []).append(number)
            unit_terms[unit] |= self._chunk_terms[number]
        self._unit_terms = {unit: frozenset(words) for unit, words in unit_terms.items()}
        files = len(self._unit_terms)
        document_frequency: dict[str, int] = defaultdict(int)
        for words in self._unit_terms.values():
            for word in words:
                document_frequency[word] += 1
        self._idf = {word: _idf(files, df) for word, df in document_frequency.items()}
        self._max_idf = _idf(files, 0)
        if any(tokenised):
            import bm25s  # and scipy: only a process that searches needs them

            self._bm25 = bm25s.BM25()
            self._bm25.index(tokenised, show_progress=False)

    def __len__(self) -> int:
        return len(self.chunks)

    def idf(self, word: str) -> float:
        return self._idf.get(word, self._max_idf)

    def search(
        self,
        query_vector: Sequence[float],
        query: str,
        limit: int,
        *,
        product: str | None = None,
        ignore_terms: Iterable[str] = (),
        leave_out: str | None = None,
    ) -> list[RankedPassage]:
        """The best passage of each of the `limit` best files for the query, best first.

        `leave_out` hides the customer wording (`questions:` entry) with exactly this text, so
        a calibration can ask a wording as if the knowledge did not list it."""
        if not self.chunks:
            return []
        ignored = set(ignore_terms)
        query_terms = list(dict.fromkeys(t for t in terms(query) if t not in ignored))
        dense = self.vectors @ np.asarray(query_vector, dtype=np.float32)
        lexical = self._lexical(query_terms)
        allowed = np.ones(len(self.chunks), dtype=bool)
        if product is not None:
            allowed = self._products == product
            if not allowed.any():
                return []
        if leave_out is not None:
            allowed = allowed & ~self._wording_mask(leave_out)
        dense_order = _top(np.where(allowed, dense, -np.inf), CANDIDATES)
        lexical_order = [
            i for i in _top(np.where(allowed, lexical, -np.inf), CANDIDATES) if lexical[i] > 0
        ]
        fused: dict[int, float] = defaultdict(float)
        for rank, number in enumerate(dense_order):
            fused[number] += 1.0 / (RRF_K + rank + 1)
        for rank, number in enumerate(lexical_order):
            fused[number] += 1.0 / (RRF_K + rank + 1)
        file_score: dict[str, float] = {}
        for number, score in fused.items():
            unit = self._units[number]
            file_score[unit] = max(file_score.get(unit, 0.0), score)
        units = sorted(file_score, key=lambda unit: file_score[unit], reverse=True)[:limit]
        dense_rank = _file_ranks(self._units, dense_order)
        lexical_rank = _file_ranks(self._units, lexical_order)
        best_lexical = float(lexical.max()) if len(lexical) else 0.0
        weights = {t: self.idf(t) for t in query_terms}
        total_weight = sum(weights.values()) or 1.0
        passages = []
        for unit in units:
            numbers = [n for n in self._by_unit[unit] if allowed[n]]
            sections = [n for n in numbers if self.chunks[n].kind == "section"] or numbers
            questions = [n for n in numbers if self.chunks[n].kind == "question"]
            best = self._best_section(sections, dense, query_terms, weights, total_weight)
            best_question = max(questions, key=lambda n: dense[n], default=None)
            file_terms = self._unit_terms[unit]
            missing = [weights[t] for t in query_terms if t not in file_terms]
            unknown = sum(weights[t] for t in query_terms if t not in self._idf)
            chunk = self.chunks[best]
            question_dense = float(dense[best_question]) if best_question is not None else 0.0
            file_dense = float(max(dense[n] for n in numbers))
            matched = chunk.section or chunk.title
            if best_question is not None and question_dense >= file_dense:
                matched = self.chunks[best_question].question
            evidence = Evidence(
                dense=file_dense,
                section_dense=float(dense[best]),
                question_dense=question_dense,
                lexical=float(max(lexical[n] for n in numbers)) / best_lexical
                if best_lexical > 0
                else 0.0,
                coverage=sum(w for t, w in weights.items() if t in file_terms) / total_weight
                if query_terms
                else 0.0,
                section_coverage=self._coverage(best, query_terms, weights, total_weight),
                missing_specific=max(missing, default=0.0) / self._max_idf,
                unknown=unknown / total_weight if query_terms else 0.0,
                dense_rank=dense_rank.get(unit, CANDIDATES),
                lexical_rank=lexical_rank.get(unit, CANDIDATES),
                query_terms=len(query_terms),
            )
            passages.append(RankedPassage(chunk, file_dense, file_score[unit], matched, evidence))
        return passages

    def wordings(self) -> list[StoredChunk]:
        """The customer wordings (`questions:` entries and FAQ questions) of the knowledge."""
        return [chunk for chunk in self.chunks if chunk.kind == "question"]

    def _wording_mask(self, text: str) -> np.ndarray:
        return np.array(
            [chunk.kind == "question" and chunk.question == text for chunk in self.chunks]
        )

    def _lexical(self, query_terms: list[str]) -> np.ndarray:
        if self._bm25 is None or not query_terms:
            return np.zeros(len(self.chunks), dtype=np.float32)
        return np.asarray(self._bm25.get_scores(query_terms), dtype=np.float32)

    def _coverage(
        self, number: int, query_terms: list[str], weights: dict[str, float], total: float
    ) -> float:
        if not query_terms:
            return 0.0
        found = self._chunk_terms[number]  # a chunk's words include its file's title
        return sum(weights[t] for t in query_terms if t in found) / total

    def _best_section(
        self,
        sections: list[int],
        dense: np.ndarray,
        query_terms: list[str],
        weights: dict[str, float],
        total: float,
    ) -> int:
        """The section that answers: its meaning, and how many of the question's words it has."""
        return max(
            sections,
            key=lambda n: (
                float(dense[n])
                + SECTION_WORD_WEIGHT * self._coverage(n, query_terms, weights, total)
            ),
        )


def _idf(files: int, document_frequency: int) -> float:
    return math.log(1.0 + (files - document_frequency + 0.5) / (document_frequency + 0.5))


def _top(scores: np.ndarray, count: int) -> list[int]:
    count = min(count, len(scores))
    if count == 0:
        return []
    part = np.argpartition(-scores, count - 1)[:count]
    ordered = part[np.argsort(-scores[part], kind="stable")]
    return ordered[np.isfinite(scores[ordered])].tolist()


def _file_ranks(units: list[str], order: list[int]) -> dict[str, int]:
    ranks: dict[str, int] = {}
    for number in order:
        unit = units[number]
        if unit not in ranks:
            ranks[unit] = len(ranks)
    return ranks
