"""Knowledge files become chunks; every kind of bad file is reported with its path and line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gigcx.knowledge.documents import (
    ChunkingOptions,
    KnowledgeFileError,
    parse_document,
    read_raw,
    scan_folder,
)

OPTIONS = ChunkingOptions(chunk_size=800, chunk_overlap=120)


def parse(path: str, text: str | bytes):
    raw = text.encode() if isinstance(text, str) else text
    return parse_document(path, raw, OPTIONS)


def parse_error(path: str, text: str | bytes) -> KnowledgeFileError:
    with pytest.raises(KnowledgeFileError) as caught:
        parse(path, text)
    return caught.value


PAIRING = """---
title: Pair the X2 headset with a phone
product: x2
tags: [bluetooth, pairing]
questions:
  - my headset won't connect to my phone
audience: public
---
Intro line.

## Steps

1. Hold the button.

```
## not a heading inside a code fence
```

### Detail
Still in Steps.

## Troubleshooting

Reset it.
"""


def test_markdown_sections_become_chunks_with_front_matter_metadata() -> None:
    document = parse("x2/pairing.md", PAIRING)
    sections = [c for c in document.chunks if c.kind == "section"]
    assert [c.section for c in sections] == ["", "Steps", "Troubleshooting"]
    steps = sections[1]
    assert "## not a heading inside a code fence" in steps.answer
    assert "Still in Steps." in steps.answer
    assert steps.title == "Pair the X2 headset with a phone"
    assert steps.embed_text.startswith("Pair the X2 headset with a phone\nSteps")
    assert (steps.product, steps.tags, steps.audience) == ("x2", ("bluetooth", "pairing"), "public")


def test_front_matter_questions_are_matched_and_answer_with_the_topic() -> None:
    document = parse("x2/pairing.md", PAIRING)
    [question] = [c for c in document.chunks if c.kind == "question"]
    assert question.embed_text == "my headset won't connect to my phone"
    assert "Intro line." in question.answer
    assert "1. Hold the button." in question.answer


def test_markdown_without_front_matter_takes_its_title_from_the_first_heading() -> None:
    document = parse("care.md", "# Cleaning your headphones\n\nWipe them.\n")
    assert document.chunks[0].title == "Cleaning your headphones"
    assert document.chunks[0].answer == "Wipe them."


def test_markdown_without_any_heading_takes_its_title_from_the_file_name() -> None:
    document = parse("guides/ear-cushion_care.md", "Wipe them weekly.\n")
    assert document.chunks[0].title == "Ear cushion care"


def test_a_long_section_is_split_with_overlap() -> None:
    sentences = " ".join(f"Sentence number {n} about the battery." for n in range(120))
    document = parse("long.md", f"# Long\n\n## Battery\n\n{sentences}\n")
    pieces = [c for c in document.chunks if c.kind == "section"]
    assert len(pieces) > 3
    assert all(len(c.answer) <= OPTIONS.chunk_size for c in pieces)
    assert all(c.section == "Battery" for c in pieces)
    # Overlap: the end of one piece is repeated at the start of the next.
    assert pieces[0].answer[-30:] in pieces[1].answer


def test_faq_entries_index_question_alternatives_and_answer() -> None:
    text = """
- question: Are the buds waterproof?
  alternatives: [can i swim with them]
  answer: They are IPX4.
  product: buds
- question: Student discount?
  answer: 15% off.
"""
    document = parse("faq/general.faq.yml", text)
    first = [c for c in document.chunks if c.title == "Are the buds waterproof?"]
    assert {c.embed_text for c in first if c.kind == "question"} == {
        "Are the buds waterproof?",
        "can i swim with them",
    }
    assert all(c.answer == "They are IPX4." and c.product == "buds" for c in first)
    assert len(document.chunks) == 5


def test_the_content_hash_changes_with_content_and_with_chunk_settings() -> None:
    a = parse_document("a.md", b"# A\n\ntext", OPTIONS)
    b = parse_document("a.md", b"# A\n\ntext!", OPTIONS)
    c = parse_document("a.md", b"# A\n\ntext", ChunkingOptions(500, 50))
    assert len({a.content_hash, b.content_hash, c.content_hash}) == 3


# ---------------------------------------------------------------- bad input


def test_invalid_yaml_in_front_matter_names_the_line() -> None:
    error = parse_error("x2/bad.md", "---\ntitle: ok\ntags: [unclosed\nproduct: x2\n---\nBody\n")
    assert error.path == "x2/bad.md"
    assert error.line is not None and 3 <= error.line <= 5
    assert "invalid YAML" in str(error)
    assert str(error).startswith(f"x2/bad.md:{error.line}: ")


def test_unclosed_front_matter_is_reported() -> None:
    error = parse_error("open.md", "---\ntitle: never closed\n\nBody\n")
    assert error.line == 1 and "no closing '---'" in error.message


def test_front_matter_that_is_not_a_mapping_is_reported() -> None:
    error = parse_error("list.md", "---\n- a\n- b\n---\nBody\n")
    assert "must be a mapping" in error.message


def test_unknown_audience_is_reported_at_its_line() -> None:
    error = parse_error("secret.md", "---\ntitle: T\naudience: secret\n---\nBody\n")
    assert error.line == 3
    assert "audience: 'secret' is not allowed" in error.message
    assert "'public'" in error.message and "'internal'" in error.message


def test_a_misspelt_front_matter_field_is_an_error_not_a_silent_public_file() -> None:
    error = parse_error("typo.md", "---\ntitle: T\naudiance: internal\n---\nBody\n")
    assert error.line == 3
    assert "audiance: is not a known field" in error.message


def test_a_field_of_the_wrong_type_is_reported() -> None:
    error = parse_error("tags.md", "---\ntitle: T\ntags: {a: 1}\n---\nBody\n")
    assert error.line == 3 and "tags: Input should be a valid list" in error.message


def test_a_yaml_boolean_where_text_belongs_explains_the_quoting_rule() -> None:
    error = parse_error("norway.md", "---\ntitle: T\ntags: [no]\n---\nBody\n")
    assert error.line == 3 and "put the value in quotes" in error.message


def test_non_utf8_file_names_the_line_of_the_bad_byte() -> None:
    error = parse_error("latin1.md", "# Caf\u00e9\n\nline two\nna\u00efve\n".encode("latin-1"))
    assert error.line == 1
    assert "not valid UTF-8" in error.message


@pytest.mark.parametrize("text", ["", "   \n\n", "---\ntitle: Only front matter\n---\n"])
def test_empty_files_are_reported(text: str) -> None:
    error = parse_error("empty.md", text)
    assert "empty" in error.message or "no content" in error.message


def test_headings_without_text_are_reported() -> None:
    error = parse_error("hollow.md", "# Title\n\n## One\n\n## Two\n")
    assert "no text" in error.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("just: a mapping\n", "non-empty list"),
        ("- question: Q\n", "entry 1: answer: is required"),
        ("- question: Q\n  answer: A\n- 42\n", "entry 2 must be a mapping"),
        ("- question: Q\n  answer: A\n  colour: red\n", "colour: is not a known field"),
        ("- question: Q\n  answer: '  '\n", "must not be empty"),
        ("- question: Q\n  answer: A\n  audience: vip\n", "'vip' is not allowed"),
    ],
)
def test_bad_faq_entries_are_reported(text: str, expected: str) -> None:
    error = parse_error("faq/x.faq.yml", text)
    assert expected in error.message
    assert error.line is not None


def test_bad_faq_entry_error_points_at_the_entry_line() -> None:
    error = parse_error("faq/x.faq.yml", "- question: A\n  answer: B\n\n- question: C\n")
    assert error.line == 4


def test_scan_skips_hidden_and_other_files_and_refuses_symlinks_leading_outside(
    tmp_path: Path,
) -> None:
    root = tmp_path / "knowledge"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "a.md").write_text("# A\n\ntext")
    (root / "sub" / "b.faq.yml").write_text("- question: q\n  answer: a\n")
    (root / ".git" / "c.md").write_text("# hidden")
    (root / "notes.txt").write_text("not knowledge")
    (root / ".draft.md").write_text("# hidden draft")
    outside = tmp_path / "secrets.md"
    outside.write_text("# Secret\n\nroot password")
    os.symlink(outside, root / "leak.md")
    os.symlink(tmp_path, root / "leakdir")
    os.symlink(root / "a.md", root / "alias.md")

    entries = {entry.path: entry.error for entry in scan_folder(root)}

    assert set(entries) == {"a.md", "alias.md", "leak.md", "leakdir", "sub/b.faq.yml"}
    assert entries["a.md"] is None and entries["alias.md"] is None
    assert "symlink leads outside the knowledge folder" in str(entries["leak.md"])
    assert "symlink leads outside the knowledge folder" in str(entries["leakdir"])


def test_a_file_too_large_to_be_knowledge_is_refused(tmp_path: Path) -> None:
    (tmp_path / "huge.md").write_bytes(b"# Huge\n\n" + b"x" * 1_100_000)
    with pytest.raises(KnowledgeFileError, match="limit is 1,000,000 bytes"):
        read_raw(tmp_path, "huge.md")


# ---------------------------------------------------------------- front matter typos
# A typo near the opening '---' must never turn an internal file into public text.

PLAYBOOK = "---\ntitle: Refund playbook\naudience: internal\n---\nApprove refunds up to $50.\n"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(PLAYBOOK.replace("---\n", "--- \n", 1), id="trailing-space-fence"),
        pytest.param("\n\n" + PLAYBOOK, id="blank-first-line"),
        pytest.param(" " + PLAYBOOK, id="leading-space"),
        pytest.param(PLAYBOOK.replace("\n", "\r\n"), id="crlf"),
        pytest.param("\ufeff" + PLAYBOOK, id="bom"),
        pytest.param("\ufeff\n  ---\t\r\n" + PLAYBOOK[4:].replace("\n", "\r\n"), id="all-at-once"),
        pytest.param(PLAYBOOK.replace("---\n", "--- # internal doc\n", 1), id="comment-on-fence"),
        pytest.param("\u200b" + PLAYBOOK, id="zero-width-space"),
        pytest.param("\u2060" + PLAYBOOK, id="word-joiner"),
        pytest.param(PLAYBOOK.replace("---\n", "---\u2028", 1), id="line-separator"),
        pytest.param(PLAYBOOK.replace("\n---\n", "\n\u200b--- # end\u2029", 1), id="closing-fence"),
    ],
)
def test_a_harmless_variant_of_the_front_matter_fence_is_read_as_front_matter(text: str) -> None:
    document = parse("playbook.md", text)
    [chunk] = document.chunks
    assert chunk.audience == "internal"
    assert chunk.title == "Refund playbook"
    assert chunk.answer == "Approve refunds up to $50."


@pytest.mark.parametrize("value", ["Internal", "INTERNAL", " internal "])
def test_audience_is_read_whatever_its_case(value: str) -> None:
    document = parse("playbook.md", PLAYBOOK.replace("internal", f"'{value}'"))
    assert document.chunks[0].audience == "internal"


def test_audience_of_any_case_is_read_in_faq_files_too() -> None:
    document = parse("faq/staff.faq.yml", "- question: Q\n  answer: A\n  audience: Internal\n")
    assert {c.audience for c in document.chunks} == {"internal"}


def test_an_audience_that_is_neither_public_nor_internal_names_the_file_and_field() -> None:
    error = parse_error("playbook.md", PLAYBOOK.replace("internal", "Staff"))
    assert str(error).startswith("playbook.md:3: ")
    assert "audience: 'Staff' is not allowed" in error.message


def test_an_unclosed_fence_after_blank_lines_names_the_line_it_opened_on() -> None:
    error = parse_error("playbook.md", "\n\n  --- \ntitle: T\naudience: internal\n\nBody\n")
    assert error.line == 3 and "no closing '---'" in error.message


def test_yaml_errors_after_blank_lines_name_the_right_line() -> None:
    error = parse_error("playbook.md", "\n---\ntitle: T\naudiance: internal\n---\nBody\n")
    assert error.line == 4 and "audiance: is not a known field" in error.message


@pytest.mark.parametrize(
    ("first_line", "expected"),
    [("----", "exactly '---'"), ("+++", "TOML front matter")],
)
def test_a_fence_of_the_wrong_kind_is_an_error_not_public_text(
    first_line: str, expected: str
) -> None:
    error = parse_error("playbook.md", PLAYBOOK.replace("---", first_line))
    assert error.line == 1 and expected in error.message


FAQ = "- question: Refund without a receipt?\n  answer: Up to $50.\n  audience: internal\n"


@pytest.mark.parametrize(
    ("name", "text", "line", "expected"),
    [
        pytest.param(
            "p.md", PLAYBOOK.replace("---", "\u2014" * 3), 1, "exactly '---'", id="em-dashes"
        ),
        pytest.param(
            "p.md", PLAYBOOK.replace("---", "\u2013" * 3), 1, "exactly '---'", id="en-dashes"
        ),
        pytest.param(
            "p.md", "# Refund playbook\n\n" + PLAYBOOK, 5, "at the very top", id="heading-first"
        ),
        pytest.param(
            "p.md", "<!-- staff -->\n" + PLAYBOOK, 4, "at the very top", id="html-comment-first"
        ),
        pytest.param(
            "p.md",
            "# Playbook\n"
            + PLAYBOOK.replace("audience: internal", "\u200b Audience :\u00a0INTERNAL"),
            4,
            "looks meant to be internal",
            id="invisible-characters-around-audience",
        ),
        pytest.param(
            "p.md",
            PLAYBOOK.replace(
                "title: Refund playbook\naudience", "title: >\n  Refund playbook\n  audience"
            ),
            4,
            "does not parse as internal",
            id="audience-inside-the-title",
        ),
        pytest.param(
            "p.md",
            PLAYBOOK.replace("audience: internal\n", "audience: internal\naudience: public\n"),
            4,
            "key 'audience' is given twice (lines 3 and 4)",
            id="internal-then-public",
        ),
        pytest.param(
            "p.md",
            PLAYBOOK.replace("audience: internal\n", "audience: public\naudience: internal\n"),
            4,
            "key 'audience' is given twice (lines 3 and 4)",
            id="public-then-internal",
        ),
        pytest.param(
            "p.faq.yml",
            FAQ + "  audience: public\n",
            4,
            "key 'audience' is given twice (lines 3 and 4)",
            id="faq-internal-then-public",
        ),
        pytest.param(
            "p.faq.yml",
            FAQ.replace("internal", "public") + "  audience: internal\n",
            4,
            "key 'audience' is given twice (lines 3 and 4)",
            id="faq-public-then-internal",
        ),
        pytest.param(
            "p.md",
            "# Goodwill refunds\n---\naudience:\n  internal\n---\n## Code\nStaff only.\n",
            3,
            "looks meant to be internal",
            id="heading-first-value-on-the-next-line",
        ),
        pytest.param(
            "p.md",
            "# Goodwill refunds\n---\naudience: &a internal\n---\nStaff only.\n",
            3,
            "looks meant to be internal",
            id="heading-first-yaml-anchor",
        ),
        pytest.param(
            "p.md",
            "# Goodwill refunds\n---\n{title: X, audience: internal}\n---\nStaff only.\n",
            3,
            "looks meant to be internal",
            id="heading-first-flow-mapping",
        ),
        pytest.param(
            "p.faq.yml",
            "- question: Q\n  answer: A\n- question: Refund?\n  answer: |\n    Up to $50.\n"
            "    audience: internal\n",
            6,
            "entry 2 does not parse as internal",
            id="faq-audience-inside-the-answer",
        ),
    ],
)
def test_a_file_that_says_it_is_internal_but_does_not_parse_as_internal_is_an_error(
    name: str, text: str, line: int, expected: str
) -> None:
    error = parse_error(name, text)
    assert str(error).startswith(f"{name}:{line}: ")
    assert expected in error.message
    assert error.says_internal  # sync withdraws any public version of it


def test_a_public_file_may_mention_the_audience_field_in_a_sentence() -> None:
    text = "# Hiding a page\n\nWrite `audience: internal` in its front matter.\n"
    assert parse("help.md", text).chunks[0].audience == "public"


def test_an_faq_file_may_mix_public_and_internal_entries() -> None:
    document = parse("faq/mixed.faq.yml", "- question: Q\n  answer: A\n" + FAQ)
    assert [c.audience for c in document.chunks if c.kind == "section"] == ["public", "internal"]


def test_a_key_given_twice_anywhere_in_yaml_is_an_error() -> None:
    error = parse_error("t.md", "---\ntitle: A\ntitle: B\n---\nBody\n")
    assert str(error).startswith("t.md:3: ") and "key 'title' is given twice" in error.message
    assert not error.says_internal


def test_a_horizontal_rule_later_in_the_file_is_not_front_matter() -> None:
    document = parse("care.md", "# Care\n\nWipe them.\n\n---\n\nDry them.\n")
    assert "Dry them." in document.chunks[0].answer
