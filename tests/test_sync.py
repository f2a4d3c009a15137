"""Sync the example brand into a real Chroma index with the real model, then edit it as a
brand team would: change, delete, break and fix files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gigcx.knowledge import KnowledgeIndex, sync_knowledge
from gigcx.knowledge.documents import ChunkingOptions

GOOD_WARRANTY = """---
title: Warranty
tags: [warranty]
---
## How long

Every Kestrel product has a 2-year limited warranty.
"""


def top(index: KnowledgeIndex, query: str, **kwargs: object):
    hits = index.search(query, 3, **kwargs)  # type: ignore[arg-type]
    assert hits, f"no hits for {query!r}"
    return hits[0]


def test_first_sync_indexes_every_file_and_search_finds_the_right_one(
    knowledge_dir: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    report = sync_knowledge(knowledge_dir, index, options)

    assert report.ok and not report.failed
    assert len(report.added) == 21 and not report.changed and not report.removed
    assert report.chunks_embedded == report.chunks_total > 21
    hit = top(index, "how do i connect my headset to my phone with bluetooth")
    assert hit.path == "x2/pairing.md"
    assert hit.title == "Pair the X2 headset with a phone"
    assert hit.url == "https://help.kestrel-audio.example/x2/pairing"
    assert top(index, "can i swim with my earbuds").path == "faq/general.faq.yml"
    assert top(index, "which cable does the older x1 use for charging").path == "x1/battery.md"


def test_a_hit_on_a_customer_question_returns_the_answer_it_belongs_to(
    knowledge_dir: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    sync_knowledge(knowledge_dir, index, options)

    hit = top(index, "my headset won't connect to my phone")
    assert hit.matched == "my headset won't connect to my phone"
    # The section of the matched file that answers, not a list of questions.
    assert hit.path == "x2/pairing.md"
    assert "steady blue light" in hit.text or "Press and hold the power button" in hit.text

    faq = top(index, "the headset keeps talking to me")
    assert faq.text.startswith("In the Kestrel Connect app open Settings > Voice prompts")


def test_one_passage_appears_once_even_when_several_of_its_questions_match(
    knowledge_dir: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    sync_knowledge(knowledge_dir, index, options)
    hits = index.search("are the buds waterproof, can I swim or wear them in rain", 5)
    keys = [(h.path, h.section) for h in hits]
    assert len(keys) == len(set(keys))


def test_internal_knowledge_never_reaches_a_customer_search(
    knowledge_dir: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    sync_knowledge(knowledge_dir, index, options)
    query = "known issue firmware 3.2 drops multipoint workaround ENG-2231"

    customer_hits = index.search(query, 50)
    expert_hits = index.search(query, 5, include_internal=True)

    assert customer_hits and all(h.audience == "public" for h in customer_hits)
    assert not any(h.path.startswith("internal/") for h in customer_hits)
    assert expert_hits[0].path == "internal/x2-firmware-3-2-known-issue.md"
    assert expert_hits[0].audience == "internal"


def test_search_can_be_limited_to_one_product(
    knowledge_dir: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    sync_knowledge(knowledge_dir, index, options)
    hits = index.search("how long does the battery last", 5, product="buds")
    assert hits and all(h.product == "buds" for h in hits)


def test_resync_of_unchanged_files_embeds_nothing(
    knowledge_dir: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    first = sync_knowledge(knowledge_dir, index, options)
    second = sync_knowledge(knowledge_dir, index, options)

    assert second.chunks_embedded == 0
    assert len(second.unchanged) == 21 and not second.has_changes
    assert second.chunks_total == first.chunks_total


def test_a_changed_file_is_replaced_whole_and_only_it_is_embedded(
    knowledge_dir: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    sync_knowledge(knowledge_dir, index, options)
    shipping = knowledge_dir / "general" / "shipping.md"
    shipping.write_text(
        "---\ntitle: Shipping\n---\n## Where we ship\n\nWe now ship to Australia and New Zealand.\n"
    )

    report = sync_knowledge(knowledge_dir, index, options)

    assert report.changed == ["general/shipping.md"] and not report.added
    assert report.chunks_embedded == 1
    assert (
        top(index, "do you ship to australia").text == "We now ship to Australia and New Zealand."
    )
    old = index.search("express shipping 1 to 2 business days", 10)
    assert not any("Express shipping" in h.text for h in old), "old version must be gone"


def test_a_deleted_file_is_removed_from_the_index(
    knowledge_dir: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    sync_knowledge(knowledge_dir, index, options)
    (knowledge_dir / "general" / "compatibility.md").unlink()

    report = sync_knowledge(knowledge_dir, index, options)

    assert report.removed == ["general/compatibility.md"]
    assert not any(h.path == "general/compatibility.md" for h in index.search("aptx ps5", 20))


def test_a_bad_edit_keeps_the_last_good_version_searchable(
    knowledge_dir: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    warranty = knowledge_dir / "general" / "warranty.md"
    warranty.write_text(GOOD_WARRANTY)
    sync_knowledge(knowledge_dir, index, options)

    # A brand editor breaks the front matter and, in the same edit, rewrites the body.
    warranty.write_text("---\ntitle: Warranty\ntags: [warranty\n---\n## How long\n\nNow 5 years.\n")
    report = sync_knowledge(knowledge_dir, index, options)

    assert not report.ok
    [failure] = report.failed
    assert failure.path == "general/warranty.md" and failure.line is not None
    assert not report.changed and not report.removed
    hit = top(index, "how long is the warranty")
    assert hit.path == "general/warranty.md"
    assert hit.text == "Every Kestrel product has a 2-year limited warranty."

    # Fixed: the new version replaces the old one.
    warranty.write_text(GOOD_WARRANTY.replace("2-year", "5-year"))
    fixed = sync_knowledge(knowledge_dir, index, options)
    assert fixed.ok and fixed.changed == ["general/warranty.md"]
    assert (
        top(index, "how long is the warranty").text
        == "Every Kestrel product has a 5-year limited warranty."
    )


@pytest.mark.parametrize(
    ("name", "content", "expect_line", "expect_text"),
    [
        ("broken-yaml.md", b"---\ntitle: [oops\n---\nBody\n", True, "invalid YAML"),
        ("latin1.md", "# Caf\u00e9\n\nBody".encode("latin-1"), True, "not valid UTF-8"),
        ("empty.md", b"", False, "file is empty"),
        (
            "secret.md",
            b"---\ntitle: T\naudience: secret\n---\nBody\n",
            True,
            "'secret' is not allowed",
        ),
        ("bad.faq.yml", b"- question: [unclosed\n", True, "invalid YAML"),
    ],
)
def test_each_bad_file_is_reported_and_every_other_file_still_syncs(
    knowledge_dir: Path,
    index: KnowledgeIndex,
    options: ChunkingOptions,
    name: str,
    content: bytes,
    expect_line: bool,
    expect_text: str,
) -> None:
    (knowledge_dir / name).write_bytes(content)

    report = sync_knowledge(knowledge_dir, index, options)

    [failure] = report.failed
    assert failure.path == name and expect_text in failure.message
    assert (failure.line is not None) == expect_line
    assert len(report.added) == 21
    assert not any(
        h.path == name for h in index.search("Body oops secret", 30, include_internal=True)
    )


def test_a_symlink_leading_outside_the_folder_is_never_indexed(
    tmp_path: Path, knowledge_dir: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    secret = tmp_path / "passwords.md"
    secret.write_text("# Admin passwords\n\nThe admin password is hunter2.\n")
    os.symlink(secret, knowledge_dir / "passwords.md")

    report = sync_knowledge(knowledge_dir, index, options)

    [failure] = report.failed
    assert failure.path == "passwords.md" and "outside the knowledge folder" in failure.message
    assert len(report.added) == 21
    assert not any(
        "hunter2" in h.text for h in index.search("admin password", 30, include_internal=True)
    )


def test_dry_run_reports_the_plan_and_changes_nothing(
    knowledge_dir: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    sync_knowledge(knowledge_dir, index, options)
    before = index.count()
    (knowledge_dir / "general" / "returns.md").unlink()
    (knowledge_dir / "new.md").write_text("# New topic\n\nGift cards never expire.\n")
    (knowledge_dir / "x2" / "reset.md").write_text("# Reset\n\nHold both buttons for 20 seconds.\n")

    plan = sync_knowledge(knowledge_dir, index, options, dry_run=True)

    assert (plan.added, plan.changed, plan.removed) == (
        ["new.md"],
        ["x2/reset.md"],
        ["general/returns.md"],
    )
    assert plan.chunks_embedded == 2  # would embed
    assert index.count() == before
    assert top(index, "what is your return policy").path == "general/returns.md"


def test_rebuild_starts_over(
    knowledge_dir: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    first = sync_knowledge(knowledge_dir, index, options)
    rebuilt = sync_knowledge(knowledge_dir, index, options, rebuild=True)
    assert rebuilt.rebuilt and len(rebuilt.added) == 21
    assert rebuilt.chunks_total == first.chunks_total


def test_leftovers_of_an_interrupted_write_are_cleaned_up(
    knowledge_dir: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    from gigcx.knowledge.documents import parse_document

    sync_knowledge(knowledge_dir, index, options)
    total = index.count()
    # Simulate a crash after the new version was written but before the old one was dropped:
    # an extra version of shipping.md sits beside the current one.
    stale = parse_document("general/shipping.md", b"# Shipping\n\nStale text.\n", options)
    collection = index._writable("public")
    collection.upsert(
        ids=["general/shipping.md::stale::0"],
        embeddings=[index.embedder.embed_query("stale")],
        metadatas=[{**_metadata(stale), "file_hash": "stale"}],
    )
    assert index.count() == total + 1

    report = sync_knowledge(knowledge_dir, index, options)

    assert report.ok and index.count() == total
    assert not any(h.text == "Stale text." for h in index.search("stale text shipping", 20))


def _metadata(document):  # the same fields the index writes
    from gigcx.knowledge.index import _chunk_metadata

    return _chunk_metadata(document.chunks[0], document.content_hash)


def test_a_brand_with_only_internal_knowledge_gives_customers_no_hits(
    tmp_path: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    folder = tmp_path / "internal-only"
    folder.mkdir()
    (folder / "playbook.md").write_text(
        "---\ntitle: Refund playbook\naudience: internal\n---\nApprove refunds up to $50.\n"
    )
    sync_knowledge(folder, index, options)

    assert index.search("can I get a refund", 5) == []
    assert index.search("can I get a refund", 5, include_internal=True)[0].path == "playbook.md"


PLAYBOOK = (
    "---\ntitle: Refund playbook\naudience: internal\n---\n"
    "Staff may approve refunds up to {limit} without a receipt.\n"
)
TYPOS = [
    pytest.param(lambda text: text.replace("---\n", "--- \n", 1), id="trailing-space-fence"),
    pytest.param(lambda text: "\n" + text, id="blank-first-line"),
    pytest.param(lambda text: " " + text, id="leading-space"),
    pytest.param(lambda text: text.replace("\n", "\r\n"), id="crlf"),
    pytest.param(lambda text: "\ufeff" + text, id="bom"),
    pytest.param(lambda text: text.replace("\n---\n", "\n\n", 1), id="unclosed-fence"),
    pytest.param(lambda text: text.replace("internal", "INTERNAL"), id="audience-INTERNAL"),
]


def customer_sees_the_playbook(index: KnowledgeIndex) -> bool:
    hits = index.search("can staff approve a refund without a receipt", 50)
    return any(h.path == "playbook.md" or "without a receipt" in h.text for h in hits)


@pytest.mark.parametrize("typo", TYPOS)
def test_a_new_internal_file_with_a_front_matter_typo_is_never_shown_to_customers(
    tmp_path: Path, index: KnowledgeIndex, options: ChunkingOptions, typo: Callable[[str], str]
) -> None:
    folder = tmp_path / "knowledge"
    folder.mkdir()
    (folder / "returns.md").write_text("# Returns\n\nCustomers can return items within 30 days.\n")
    (folder / "playbook.md").write_bytes(typo(PLAYBOOK.format(limit="$50")).encode())

    report = sync_knowledge(folder, index, options)

    assert not customer_sees_the_playbook(index)
    assert index.search("refund without a receipt", 5)[0].path == "returns.md"
    if report.failed:
        [failure] = report.failed
        assert failure.path == "playbook.md" and failure.line == 1
        assert "no closing '---'" in failure.message
    else:
        expert = index.search("refund without a receipt", 5, include_internal=True)
        assert (expert[0].path, expert[0].audience) == ("playbook.md", "internal")


@pytest.mark.parametrize("typo", TYPOS)
def test_an_internal_file_edited_with_a_front_matter_typo_stays_internal(
    tmp_path: Path, index: KnowledgeIndex, options: ChunkingOptions, typo: Callable[[str], str]
) -> None:
    folder = tmp_path / "knowledge"
    folder.mkdir()
    (folder / "returns.md").write_text("# Returns\n\nCustomers can return items within 30 days.\n")
    playbook = folder / "playbook.md"
    playbook.write_text(PLAYBOOK.format(limit="$50"))
    sync_knowledge(folder, index, options)

    # An editor raises the limit and, in the same edit, slips on the front matter.
    playbook.write_bytes(typo(PLAYBOOK.format(limit="$80")).encode())
    report = sync_knowledge(folder, index, options)

    assert not customer_sees_the_playbook(index)
    assert not report.removed and not report.added
    expert = index.search("refund without a receipt", 5, include_internal=True)[0]
    assert (expert.path, expert.audience) == ("playbook.md", "internal")
    if report.failed:
        # The last good version stays, and the report says which file and line to fix.
        [failure] = report.failed
        assert str(failure).startswith("playbook.md:1: ")
        assert not report.changed
        assert "$50" in expert.text
    else:
        assert report.changed == ["playbook.md"]
        assert "$80" in expert.text


def test_an_index_that_published_a_typo_file_before_this_fix_is_repaired_by_the_next_sync(
    tmp_path: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    import hashlib

    from gigcx.knowledge.documents import parse_document

    folder = tmp_path / "knowledge"
    folder.mkdir()
    (folder / "returns.md").write_text("# Returns\n\nCustomers can return items within 30 days.\n")
    raw = PLAYBOOK.format(limit="$50").replace("---\n", "--- \n", 1).encode()
    (folder / "playbook.md").write_bytes(raw)
    # What earlier releases stored for this file: public text, under the hash of its bytes.
    old_hash = hashlib.sha256(raw + f"v1/{options.chunk_size}/{options.chunk_overlap}".encode())
    public_text = b"# Refund playbook\n\nStaff may approve refunds up to $50 without a receipt.\n"
    leaked = parse_document("playbook.md", public_text, options, old_hash.hexdigest())
    texts = [chunk.embed_text for chunk in leaked.chunks]
    index.write_documents([leaked], index.embedder.embed_documents(texts))
    assert customer_sees_the_playbook(index)

    report = sync_knowledge(folder, index, options)

    assert report.changed == ["playbook.md"]
    assert not customer_sees_the_playbook(index)


# Typos the parser does not read as internal: each is internal once the fix reads it, or a
# failure naming the file; never public text. (FAQ variants write playbook.faq.yml.)
PLAYBOOK_FAQ = (
    "- question: Can staff approve a refund without a receipt?\n"
    "  answer: Staff may approve refunds up to {limit} without a receipt.\n"
    "  audience: internal\n"
)
MORE_TYPOS = [  # (typo, an FAQ file?, reported as failed?)
    pytest.param(
        lambda t: t.replace("---\n", "--- # internal doc\n", 1), False, False, id="fence-comment"
    ),
    pytest.param(lambda t: "\u200b" + t, False, False, id="zero-width-space"),
    pytest.param(lambda t: "\u2060" + t, False, False, id="word-joiner"),
    pytest.param(lambda t: t.replace("---", "\u2014" * 3), False, True, id="em-dashes"),
    pytest.param(lambda t: t.replace("---", "\u2013" * 3), False, True, id="en-dashes"),
    pytest.param(lambda t: "# Refund playbook\n\n" + t, False, True, id="heading-first"),
    pytest.param(lambda t: "<!-- staff only -->\n" + t, False, True, id="html-comment-first"),
    pytest.param(lambda t: t.replace("---\n", "---\u2028", 1), False, False, id="line-separator"),
    pytest.param(
        lambda t: t.replace("internal\n", "internal\naudience: public\n"),
        False,
        True,
        id="internal-then-public",
    ),
    pytest.param(
        lambda t: t.replace("audience: internal\n", "audience: public\naudience: internal\n"),
        False,
        True,
        id="public-then-internal",
    ),
    pytest.param(
        lambda t: t.replace("internal\n", "internal\n  audience: public\n"),
        True,
        True,
        id="faq-internal-then-public",
    ),
    pytest.param(
        lambda t: t.replace("audience: internal\n", "audience: public\n  audience: internal\n"),
        True,
        True,
        id="faq-public-then-internal",
    ),
    pytest.param(
        lambda t: t.replace("  audience", "    audience").replace("answer: ", "answer: |\n    "),
        True,
        True,
        id="faq-audience-inside-the-answer",
    ),
]


def write_playbook(folder: Path, typo: Callable[[str], str] | None, limit: str, faq: bool) -> str:
    name, template = ("playbook.faq.yml", PLAYBOOK_FAQ) if faq else ("playbook.md", PLAYBOOK)
    text = template.format(limit=limit)
    (folder / name).write_bytes((typo(text) if typo else text).encode())
    return name


@pytest.mark.parametrize(("typo", "faq", "fails"), MORE_TYPOS)
def test_a_new_file_that_says_internal_is_never_shown_to_customers_whatever_the_typo(
    tmp_path: Path,
    index: KnowledgeIndex,
    options: ChunkingOptions,
    typo: Callable[[str], str],
    faq: bool,
    fails: bool,
) -> None:
    folder = tmp_path / "knowledge"
    folder.mkdir()
    (folder / "returns.md").write_text("# Returns\n\nCustomers can return items within 30 days.\n")
    name = write_playbook(folder, typo, "$50", faq)

    report = sync_knowledge(folder, index, options)

    assert not customer_sees_the_playbook(index)
    assert index.search("refund without a receipt", 5)[0].path == "returns.md"
    assert bool(report.failed) == fails
    if fails:
        [failure] = report.failed
        assert failure.path == name and failure.line is not None
        assert str(failure).startswith(f"{name}:{failure.line}: ")
    else:
        expert = index.search("refund without a receipt", 5, include_internal=True)
        assert (expert[0].path, expert[0].audience) == (name, "internal")


@pytest.mark.parametrize(("typo", "faq", "fails"), MORE_TYPOS)
def test_an_internal_file_edited_with_any_typo_stays_internal_or_keeps_its_last_good_version(
    tmp_path: Path,
    index: KnowledgeIndex,
    options: ChunkingOptions,
    typo: Callable[[str], str],
    faq: bool,
    fails: bool,
) -> None:
    folder = tmp_path / "knowledge"
    folder.mkdir()
    (folder / "returns.md").write_text("# Returns\n\nCustomers can return items within 30 days.\n")
    name = write_playbook(folder, None, "$50", faq)
    sync_knowledge(folder, index, options)

    write_playbook(folder, typo, "$80", faq)
    report = sync_knowledge(folder, index, options)

    assert not customer_sees_the_playbook(index)
    assert not report.removed and not report.added
    expert = index.search("refund without a receipt", 5, include_internal=True)[0]
    assert (expert.path, expert.audience) == (name, "internal")
    assert bool(report.failed) == fails
    if fails:
        [failure] = report.failed
        assert failure.path == name and not report.changed
        assert "$50" in expert.text
    else:
        assert report.changed == [name]
        assert "$80" in expert.text


@pytest.mark.parametrize(
    "typo",
    [
        pytest.param(lambda t: t.replace("---\n", "--- # internal doc\n", 1), id="now-read"),
        pytest.param(lambda t: "# Refund playbook\n\n" + t, id="now-an-error"),
        pytest.param(
            lambda t: t.replace("internal\n", "internal\naudience: public\n"), id="duplicate-key"
        ),
    ],
)
def test_an_index_that_published_a_file_meant_to_be_internal_is_repaired_by_the_next_sync(
    tmp_path: Path, index: KnowledgeIndex, options: ChunkingOptions, typo: Callable[[str], str]
) -> None:
    import hashlib

    from gigcx.knowledge.documents import parse_document

    folder = tmp_path / "knowledge"
    folder.mkdir()
    (folder / "returns.md").write_text("# Returns\n\nCustomers can return items within 30 days.\n")
    write_playbook(folder, typo, "$50", faq=False)
    raw = (folder / "playbook.md").read_bytes()
    # What the previous release stored for this file: public text, under the hash of its bytes.
    old_hash = hashlib.sha256(raw + f"v2/{options.chunk_size}/{options.chunk_overlap}".encode())
    public_text = b"# Refund playbook\n\nStaff may approve refunds up to $50 without a receipt.\n"
    leaked = parse_document("playbook.md", public_text, options, old_hash.hexdigest())
    index.write_documents([leaked], index.embedder.embed_documents([leaked.chunks[0].embed_text]))
    assert customer_sees_the_playbook(index)

    report = sync_knowledge(folder, index, options)

    assert not customer_sees_the_playbook(index)
    assert [f.path for f in report.failed] + report.changed == ["playbook.md"]
