"""Knowledge gaps: the questions the bot escalated or answered badly, grouped by meaning.

Pure and deterministic: questions and an embedder in, clusters out (largest first). The store
query that feeds it and the admin page that shows it live elsewhere.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

# Average cosine similarity (all-MiniLM-L6-v2) between the questions of one group.
# Chosen on the labelled paraphrase groups in tests/test_gaps.py and two CLINC150 samples:
# lower merges neighbouring topics ("discount code" with "gift card"), higher splits
# paraphrases ("where is my order" from "my package hasnt arrived").
DEFAULT_SIMILARITY = 0.40
# Rows this similar are rewordings of one question; they are gathered before merging.
_NEAR_DUPLICATE = 0.70

# Rows of the similarity matrix computed at once: 1,024 x 10,000 float32 is 40 MB.
_BLOCK = 1024
# Texts sent to the embedder per call.
_EMBED_BATCH = 512


@dataclass(frozen=True)
class GapQuestion:
    """One customer question the bot escalated or that was rated unhelpful."""

    text: str
    conversation_id: str
    created_at: datetime
    kind: str
    reason: str | None = None
    route: str | None = None
    product: str | None = None
    passages: tuple[str, ...] = ()


@dataclass(frozen=True)
class GapCluster:
    """Questions that ask the same thing, with what the bot had and how often it comes back."""

    label: str
    size: int
    conversations: int
    examples: tuple[GapQuestion, ...]
    passages: tuple[tuple[str, int], ...]
    reasons: tuple[tuple[str, int], ...]
    products: tuple[tuple[str, int], ...]
    first_seen: datetime
    last_seen: datetime
    days_seen: int
    per_week: float
    low_rated: int


_GREETING = re.compile(
    r"^(?:(?:hi|hello|hey|hiya|dear|good (?:morning|afternoon|evening))"
    r"(?: there| team| support| all)?\b[\s,.!:;-]*)"
)
_COURTESY = re.compile(
    r"(?:[\s,.!?;:-]*\b(?:thanks?(?: you)?(?: so much| a lot| in advance)?|thx|ty|cheers"
    r"|pls(?: help)?|please(?: help)?|asap))+[\s,.!;:-]*$"
)


def fold_text(text: str) -> str:
    """The form two questions share when they differ only in case, spacing, a greeting or a
    sign-off ("Hi, where is my order? thanks" -> "where is my order?"). End punctuation
    stays: on the labelled groups, dropping it merged more topics."""
    folded = " ".join(text.split()).casefold()
    bare = _COURTESY.sub("", _GREETING.sub("", folded))
    return bare or folded


def meaning_text(question: GapQuestion) -> str:
    """What is embedded for a question: its folded text with its product named generically,
    so that one question about several products is one gap (products are counted apart)."""
    text = fold_text(question.text)
    if question.product:
        product = fold_text(question.product)
        if product:
            text = re.sub(rf"\b{re.escape(product)}\b", "product", text)
    return text


def find_gaps(
    questions: Sequence[GapQuestion],
    embed: Callable[[list[str]], list[list[float]]],
    *,
    similarity: float = DEFAULT_SIMILARITY,
    min_size: int = 1,
    examples: int = 5,
    limit: int | None = None,
) -> list[GapCluster]:
    """Group `questions` by meaning. Largest first (ties: most recent last_seen first).

    Each distinct text (see `meaning_text`) is embedded once. The result does not depend on
    the order of `questions`.
    """
    if not -1.0 <= similarity <= 1.0:
        raise ValueError(f"similarity must be a cosine between -1 and 1, got {similarity}")
    if examples < 1:
        raise ValueError(f"examples must be at least 1, got {examples}")
    if not questions:
        return []

    by_text: dict[str, list[GapQuestion]] = {}
    for question in questions:
        by_text.setdefault(meaning_text(question), []).append(question)
    # Sorted, so that batches (and their padding) are the same whatever the input order.
    texts = sorted(by_text)
    vectors = _embed_all(texts, embed)
    weights = np.array([len(by_text[text]) for text in texts], dtype=np.float32)

    groups = group_by_similarity(vectors, weights, similarity)

    clusters = []
    for members in groups:
        cluster = _describe(members, texts, by_text, vectors, weights, examples)
        if cluster.size >= min_size:
            clusters.append(cluster)
    clusters.sort(key=lambda c: (-c.size, -c.last_seen.timestamp(), c.label))
    return clusters if limit is None else clusters[:limit]


def group_by_similarity(
    vectors: np.ndarray, weights: np.ndarray, similarity: float
) -> list[np.ndarray]:
    """Group unit `vectors` (rows weighted by how often each was asked) so that the average
    cosine similarity between members of a group is at least `similarity`. Returns arrays
    of row indices.

    Average linkage, made to fit 10,000 rows: first near-duplicates (typos, rewordings) are
    gathered around dense centres, then those groups merge by average similarity, computed
    from group sums (for cosine, the average over all member pairs is the dot product of
    the two mean vectors), so no rows x rows matrix is ever held.
    Ties are broken by row number, so the caller fixes the order (find_gaps sorts texts).
    """
    if len(vectors) == 0:
        return []
    tight = _gather_near_duplicates(vectors, weights, max(similarity, _NEAR_DUPLICATE))
    return _merge_by_average(vectors, weights, tight, similarity)


def _gather_near_duplicates(
    vectors: np.ndarray, weights: np.ndarray, similarity: float
) -> list[np.ndarray]:
    """Balls of radius `similarity` around the densest rows.

    1. Every row gets a density: the weight of the rows within `similarity` of it.
    2. The densest row not yet taken opens a group and takes every free row near it; repeat.
    3. Each row then moves to the nearest centre, so a row taken early by a big group joins
       the group it is really closest to.
    Similarities are computed in row blocks: memory grows with rows x centres.
    """
    count = len(vectors)
    density = np.zeros(count, dtype=np.float64)
    neighbours = np.zeros(count, dtype=np.int64)
    for start in range(0, count, _BLOCK):
        near = vectors[start : start + _BLOCK] @ vectors.T >= similarity
        density[start : start + _BLOCK] = near @ weights
        neighbours[start : start + _BLOCK] = near.sum(axis=1)

    # Densest first; equal densities in row order (stable sort).
    order = np.argsort(-density, kind="stable")
    group_of = np.full(count, -1, dtype=np.int64)
    centres: list[int] = []
    for row in order:
        if group_of[row] >= 0:
            continue
        group_of[row] = len(centres)
        if neighbours[row] > 1:  # a row alone in its ball needs no search
            near = (vectors @ vectors[row] >= similarity) & (group_of < 0)
            group_of[near] = len(centres)
        centres.append(int(row))

    centre_vectors = vectors[centres]
    for start in range(0, count, _BLOCK):
        sims = vectors[start : start + _BLOCK] @ centre_vectors.T
        group_of[start : start + _BLOCK] = sims.argmax(axis=1)

    order = np.argsort(group_of, kind="stable")
    bounds = np.flatnonzero(np.diff(group_of[order])) + 1
    return np.split(order, bounds)


def _merge_by_average(
    vectors: np.ndarray, weights: np.ndarray, groups: list[np.ndarray], similarity: float
) -> list[np.ndarray]:
    """Repeatedly merge the two groups of highest average similarity while it is at least
    `similarity` (average linkage over the rows, weighted)."""
    count = len(groups)
    sums = np.stack([weights[g] @ vectors[g] for g in groups]).astype(np.float32)
    mass = np.array([weights[g].sum() for g in groups], dtype=np.float32)
    means = sums / mass[:, None]
    sims = means @ means.T
    np.fill_diagonal(sims, -np.inf)
    active = np.ones(count, dtype=bool)
    best = sims.argmax(axis=1)
    best_sim = sims[np.arange(count), best]
    members = [list(g) for g in groups]
    while True:
        first = int(np.argmax(best_sim))
        if best_sim[first] < similarity:
            break
        kept, gone = sorted((first, int(best[first])))
        sums[kept] += sums[gone]
        mass[kept] += mass[gone]
        members[kept] += members[gone]
        members[gone] = []
        active[gone] = False
        best_sim[gone] = -np.inf
        sims[gone, :] = -np.inf
        sims[:, gone] = -np.inf
        row = (sums @ sums[kept]) / (mass * mass[kept])
        row[~active] = -np.inf
        row[kept] = -np.inf
        sims[kept, :] = row
        sims[:, kept] = row
        # Groups whose best partner was one of the two look again; the rest only compare
        # with the merged group.
        stale = active & ((best == kept) | (best == gone))
        stale[kept] = True
        for other in np.flatnonzero(stale):
            best[other] = sims[other].argmax()
            best_sim[other] = sims[other, best[other]]
        closer = active & ~stale & (row > best_sim)
        best[closer] = kept
        best_sim[closer] = row[closer]
    return [np.array(sorted(group)) for group in members if group]


def _embed_all(texts: list[str], embed: Callable[[list[str]], list[list[float]]]) -> np.ndarray:
    parts = []
    for start in range(0, len(texts), _EMBED_BATCH):
        batch = texts[start : start + _EMBED_BATCH]
        vectors = np.asarray(embed(batch), dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(batch):
            raise ValueError(f"the embedder returned {len(vectors)} vectors for {len(batch)} texts")
        parts.append(vectors)
    vectors = np.concatenate(parts)
    # Cosine needs unit length; the local model already gives it, other backends may not.
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _describe(
    members: np.ndarray,
    texts: list[str],
    by_text: dict[str, list[GapQuestion]],
    vectors: np.ndarray,
    weights: np.ndarray,
    examples: int,
) -> GapCluster:
    centroid = weights[members] @ vectors[members]
    centrality = vectors[members] @ centroid
    # Most central first; equal ones by text so the choice never depends on input order.
    ranked = sorted(range(len(members)), key=lambda i: (-centrality[i], texts[members[i]]))
    shown = tuple(_representative(by_text[texts[members[i]]]) for i in ranked[:examples])
    questions = [q for i in members for q in by_text[texts[i]]]
    first_seen = min(q.created_at for q in questions)
    last_seen = max(q.created_at for q in questions)
    weeks = max(1.0, (last_seen - first_seen) / timedelta(weeks=1))
    return GapCluster(
        label=shown[0].text,
        size=len(questions),
        conversations=len({q.conversation_id for q in questions}),
        examples=shown,
        passages=_counted(title for q in questions for title in dict.fromkeys(q.passages)),
        reasons=_counted(q.reason for q in questions if q.reason),
        products=_counted(q.product for q in questions if q.product),
        first_seen=first_seen,
        last_seen=last_seen,
        days_seen=len({q.created_at.astimezone(UTC).date() for q in questions}),
        per_week=len(questions) / weeks,
        low_rated=sum(q.kind == "low_rated" for q in questions),
    )


def _representative(same_text: list[GapQuestion]) -> GapQuestion:
    """The latest asking of a text (the freshest example a brand team can open)."""
    return max(same_text, key=lambda q: (q.created_at, q.conversation_id, q.text))


def _counted(values: Iterable[str]) -> tuple[tuple[str, int], ...]:
    counts = Counter(values)
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
