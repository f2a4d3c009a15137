"""Knowledge files -> chunks.

Two formats (see README, *Knowledge files*): Markdown with YAML front matter, one topic per
file, where `##` sections become chunks; and FAQ YAML (`*.faq.yml`). A file that cannot be
read whole raises KnowledgeFileError naming the file and, where there is one, the line.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from gigcx.validation import field_problems

MARKDOWN_SUFFIXES = (".md", ".markdown")
FAQ_SUFFIXES = (".faq.yml", ".faq.yaml")
MAX_FILE_BYTES = 1_000_000
# Bumped when the way files become chunks changes, so a sync re-embeds everything once.
# 2: front matter behind a blank line, a space or a BOM is read; an index that published
# such a file as public text before must not keep it as "unchanged".
# 3: a '# comment' on the fence, invisible characters and U+2028/2029 line separators are
# read, and a file that says `audience: internal` without parsing as internal is an error;
# files an index published as public text before must be read again.
CHUNKING_VERSION = "3"

Audience = Literal["public", "internal"]
ChunkKind = Literal["section", "question"]


class KnowledgeFileError(Exception):
    """A knowledge file that cannot be indexed; says which file, which line and why.

    `says_internal` is set when the file's text declares `audience: internal` somewhere: sync
    then leaves no public version of it in the index.
    """

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.line = line
        self.says_internal = False

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Chunk:
    """One searchable piece of a knowledge file.

    `embed_text` is what is matched against questions; `answer` is what a hit shows. For a
    `question` chunk (front matter `questions:` or FAQ wording) they differ: the question is
    matched, the passage it belongs to is shown.
    """

    path: str
    position: int
    kind: ChunkKind
    title: str
    section: str
    embed_text: str
    answer: str
    audience: Audience = "public"
    product: str | None = None
    tags: tuple[str, ...] = ()
    url: str | None = None


@dataclass(frozen=True)
class KnowledgeDocument:
    """A parsed knowledge file: its relative path, content hash and chunks."""

    path: str
    content_hash: str
    chunks: list[Chunk] = field(default_factory=list)


@dataclass(frozen=True)
class ChunkingOptions:
    chunk_size: int = 800
    chunk_overlap: int = 120

    @property
    def fingerprint(self) -> str:
        return f"v{CHUNKING_VERSION}/{self.chunk_size}/{self.chunk_overlap}"


class _Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    product: str | None = None
    tags: list[str] = []
    audience: Audience = "public"
    url: str | None = None

    @field_validator("audience", mode="before")
    @classmethod
    def _audience_in_any_case(cls, value: object) -> object:
        # `Internal` means internal; other values pass through unchanged so the error quotes them.
        if isinstance(value, str) and value.strip().lower() in get_args(Audience):
            return value.strip().lower()
        return value


class FrontMatter(_Metadata):
    title: str | None = None
    questions: list[str] = []


class FaqEntry(_Metadata):
    question: str
    answer: str
    alternatives: list[str] = []
    # Other wordings of the answer (a Rasa response's variations); the bot quotes `answer`.
    answer_variations: list[str] = []
    # Where the entry came from (e.g. written by `gigcx knowledge import rasa`); not indexed.
    source: str | None = None


def is_knowledge_file(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith(MARKDOWN_SUFFIXES) or lowered.endswith(FAQ_SUFFIXES)


def content_hash(raw: bytes, options: ChunkingOptions) -> str:
    """Hash of the file's bytes and the chunking settings: equal hash, equal chunks."""
    digest = hashlib.sha256(raw)
    digest.update(options.fingerprint.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class KnowledgeFolderEntry:
    """A file found in the knowledge folder, or a problem found instead of one."""

    path: str
    error: KnowledgeFileError | None = None


def scan_folder(root: Path) -> Iterator[KnowledgeFolderEntry]:
    """Every knowledge file under `root` (relative POSIX paths, sorted), hidden files skipped.

    Symlinks are followed only while they stay inside the folder; one that leads outside is
    reported as an error and never read.
    """
    real_root = root.resolve()
    for directory, dir_names, file_names in os.walk(root, followlinks=False):
        dir_names[:] = sorted(name for name in dir_names if not name.startswith("."))
        for name in list(dir_names):
            candidate = Path(directory, name)
            if candidate.is_symlink():
                # A linked folder inside the knowledge folder is already walked where it lives.
                dir_names.remove(name)
                if not _inside(candidate, real_root):
                    yield _leads_outside(candidate, root)
        for name in sorted(file_names):
            if name.startswith(".") or not is_knowledge_file(name):
                continue
            candidate = Path(directory, name)
            if candidate.is_symlink() and not _inside(candidate, real_root):
                yield _leads_outside(candidate, root)
            else:
                yield KnowledgeFolderEntry(candidate.relative_to(root).as_posix())


def _leads_outside(link: Path, root: Path) -> KnowledgeFolderEntry:
    relative = link.relative_to(root).as_posix()
    message = f"symlink leads outside the knowledge folder (-> {os.readlink(link)}); not indexed"
    return KnowledgeFolderEntry(relative, KnowledgeFileError(relative, message))


def _inside(path: Path, real_root: Path) -> bool:
    return path.resolve().is_relative_to(real_root)


def read_raw(root: Path, relative: str) -> bytes:
    """The file's bytes, refusing files too large to be knowledge."""
    path = root / relative
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise KnowledgeFileError(
                relative, f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,} bytes"
            )
        return path.read_bytes()
    except OSError as error:
        raise KnowledgeFileError(relative, f"cannot read file ({error.strerror})") from None


def parse_document(
    relative: str, raw: bytes, options: ChunkingOptions, file_hash: str | None = None
) -> KnowledgeDocument:
    """Parse one knowledge file's bytes into chunks, or raise KnowledgeFileError."""
    text = _decode(relative, raw)
    if not text.strip():
        raise KnowledgeFileError(relative, "file is empty; add content or delete the file")
    try:
        if relative.lower().endswith(FAQ_SUFFIXES):
            chunks = _faq_chunks(relative, text)
        else:
            chunks = _markdown_chunks(relative, text, options)
    except KnowledgeFileError as error:
        error.says_internal = bool(_internal_declarations(text))
        raise
    return KnowledgeDocument(relative, file_hash or content_hash(raw, options), chunks)


def _decode(relative: str, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise KnowledgeFileError(
            relative,
            f"not valid UTF-8 (byte 0x{raw[error.start]:02x} at offset {error.start}); "
            "save the file as UTF-8",
            line,
        ) from None
    # YAML and the Markdown splitter read U+2028/2029 as line breaks; so does everything else here.
    return re.sub("\r\n|[\r\u2028\u2029]", "\n", text)


# Format characters an editor shows as nothing (zero-width space, word joiner, BOM, bidi marks).
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")
# A line that declares `audience: internal`, as YAML would write it in front matter or an FAQ
# entry (in any case, spacing or quoting), once invisible characters are gone.
# Anywhere in the file, the value even on the next line or behind a YAML anchor or tag
# ("audience:\n  internal", "audience: &a internal", "{title: X, audience: internal}").
# A sentence that mentions `audience: internal` is not a declaration: it must start a line or
# follow "{" or "," as a YAML key does.
_INTERNAL_DECLARATION = re.compile(
    r"(?:^|[{,])[ \t\-?\"']*audience[\"']?\s*[:=]\s*(?:[&!]\S*\s+)*[\"']?internal\b",
    re.IGNORECASE | re.MULTILINE,
)


def _visible(line: str) -> str:
    return _INVISIBLE.sub("", line)


def _internal_declarations(text: str) -> list[int]:
    """1-based lines that read like `audience: internal`, wherever they are in the file.

    A safety net under the parser: a file that says it is internal but is not read as internal
    (a typo we did not foresee) is an error, never public text.
    """
    clean = unicodedata.normalize("NFKC", _visible(text))
    return sorted(
        {clean.count("\n", 0, found.start()) + 1 for found in _INTERNAL_DECLARATION.finditer(clean)}
    )


def _not_read_as_internal(relative: str, line: int, what: str, fix: str) -> KnowledgeFileError:
    return KnowledgeFileError(
        relative,
        "this file looks meant to be internal (this line reads 'audience: internal') but "
        f"{what} does not parse as internal; {fix}. If the file is meant for customers, remove "
        "or reword that line. Until then customers are not shown the file",
        line,
    )


# ---------------------------------------------------------------- Markdown

# '---', with a '# comment' after it if any, as YAML allows.
_FENCE = re.compile(r"---(?:\s+#.*)?")
# The closing fence must start its line: an indented '---' can be text inside a YAML value.
_FRONT_MATTER_END = re.compile(r"(?:---|\.\.\.)(?:\s+#.*)?\s*")
# Three dashes of any kind (an editor's en or em dashes too) or a line of dashes that are not
# all ASCII, or '+++' (TOML front matter): an attempt at front matter, never Markdown to publish.
_DASHES = "\u2010-\u2015\u2212\ufe58\ufe63\uff0d"
_LOOKS_LIKE_FENCE = re.compile(rf"[-{_DASHES}]{{3,}}.*|-*[{_DASHES}][-{_DASHES}]*|\+{{3,}}.*")
_FIRST_HEADING = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def _markdown_chunks(relative: str, text: str, options: ChunkingOptions) -> list[Chunk]:
    meta, body = _split_front_matter(relative, text)
    declarations = _internal_declarations(text)
    if meta.audience != "internal" and declarations:
        raise _not_read_as_internal(
            relative,
            declarations[0],
            "its front matter",
            "put the front matter at the very top of the file (no heading or comment before it), "
            "between two lines of exactly '---', with 'audience: internal' inside it",
        )
    if not body.strip():
        raise KnowledgeFileError(relative, "has front matter but no content below it")
    title = meta.title or _first_heading(body) or _title_from_file_name(relative)
    sections = _sections(body, title)
    if not sections:
        raise KnowledgeFileError(relative, "has headings but no text under them")
    # Imported here: an unchanged sync hashes files and never splits one (langchain is slow
    # to import).
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=options.chunk_size, chunk_overlap=options.chunk_overlap
    )
    common: dict[str, Any] = {
        "path": relative,
        "title": title,
        "audience": meta.audience,
        "product": meta.product,
        "tags": tuple(meta.tags),
        "url": meta.url,
    }
    chunks: list[Chunk] = []
    for heading, section_text in sections:
        for piece in splitter.split_text(section_text):
            header = f"{title}\n{heading}" if heading else title
            chunks.append(
                Chunk(
                    position=len(chunks),
                    kind="section",
                    section=heading,
                    embed_text=f"{header}\n\n{piece}",
                    answer=piece,
                    **common,
                )
            )
    overview = _overview(sections, options.chunk_size)
    for question in meta.questions:
        chunks.append(
            Chunk(
                position=len(chunks),
                kind="question",
                section=sections[0][0],
                embed_text=question,
                answer=overview,
                **common,
            )
        )
    return chunks


def _overview(sections: list[tuple[str, str]], budget: int) -> str:
    """The opening sections of a document, whole, as long as they fit in `budget` characters.

    This is what a front matter question answers with: the topic as a whole, not one section.
    """
    parts: list[str] = []
    used = 0
    for heading, text in sections:
        part = f"## {heading}\n\n{text}" if heading else text
        if parts and used + len(part) > budget:
            break
        parts.append(part)
        used += len(part)
    return "\n\n".join(parts)


def _split_front_matter(relative: str, text: str) -> tuple[FrontMatter, str]:
    """Front matter and body. A first line that looks like a fence is front matter or an error.

    Blank lines, indentation, invisible characters, trailing spaces and a '# comment' around
    the opening '---' are tolerated; if such a file were read as plain Markdown instead, its
    `audience: internal` would be published as text.
    """
    lines = text.split("\n")
    start = next((n for n, line in enumerate(lines) if _bare(line)), None)
    if start is None or not _LOOKS_LIKE_FENCE.fullmatch(_bare(lines[start])):
        return FrontMatter(), text
    fence = _bare(lines[start])
    if fence.startswith("+"):
        raise KnowledgeFileError(
            relative,
            "TOML front matter ('+++') is not supported; write the fields as YAML between "
            "two '---' lines",
            start + 1,
        )
    if not _FENCE.fullmatch(fence):
        raise KnowledgeFileError(
            relative,
            f"front matter must open with a line of exactly '---' (three ASCII hyphens), "
            f"not {fence!r} (if this is not front matter, start the file with text or a heading)",
            start + 1,
        )
    end = next(
        (
            n
            for n in range(start + 1, len(lines))
            if _FRONT_MATTER_END.fullmatch(_visible(lines[n]))
        ),
        None,
    )
    if end is None:
        raise KnowledgeFileError(
            relative,
            "front matter starts with '---' but has no closing '---' line; "
            "add a line of '---' after the last field",
            start + 1,
        )
    yaml_text = "\n".join(lines[start + 1 : end])
    body = "\n".join(lines[end + 1 :])
    first_line = start + 2
    data = _load_yaml(relative, yaml_text, first_line=first_line)
    if data is None:
        return FrontMatter(), body
    if not isinstance(data, dict):
        raise KnowledgeFileError(relative, "front matter must be a mapping of fields", first_line)
    try:
        return FrontMatter(**data), body
    except ValidationError as error:
        raise _field_error(relative, error, yaml_text, first_line, "front matter") from None


def _bare(line: str) -> str:
    """The line without surrounding whitespace or invisible characters (BOM, zero-width)."""
    return _visible(line).strip()


def _first_heading(body: str) -> str | None:
    match = _FIRST_HEADING.search(body)
    return match.group(1).strip() if match else None


def _title_from_file_name(relative: str) -> str:
    stem = Path(relative).name
    for suffix in MARKDOWN_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    words = re.sub(r"[-_]+", " ", stem).strip()
    return words[:1].upper() + words[1:] if words else relative


def _sections(body: str, title: str) -> list[tuple[str, str]]:
    """(heading, text) for the lead and each `##` section, in order, empty ones dropped.

    `###` and deeper stay inside their `##` section; code fences are never split on.
    """
    from langchain_text_splitters.markdown import ExperimentalMarkdownSyntaxTextSplitter

    splitter = ExperimentalMarkdownSyntaxTextSplitter(
        headers_to_split_on=[("#", "h1"), ("##", "h2")], strip_headers=True
    )
    grouped: list[tuple[tuple[str, str], list[str]]] = []
    for piece in splitter.split_text(body):
        key = (piece.metadata.get("h1", ""), piece.metadata.get("h2", ""))
        if grouped and grouped[-1][0] == key:
            grouped[-1][1].append(piece.page_content)
        else:
            grouped.append((key, [piece.page_content]))
    sections: list[tuple[str, str]] = []
    for (h1, h2), parts in grouped:
        text = "".join(parts).strip()
        if not text:
            continue
        heading = h2 or (h1 if h1 and h1 != title else "")
        sections.append((heading, text))
    return sections


# ---------------------------------------------------------------- FAQ YAML


def _faq_chunks(relative: str, text: str) -> list[Chunk]:
    data = _load_yaml(relative, text, first_line=1)
    if not isinstance(data, list) or not data:
        raise KnowledgeFileError(
            relative,
            "an FAQ file must be a non-empty list of entries (- question: ...\\n  answer: ...)",
            1,
        )
    entry_lines = _list_item_lines(text)
    entries: list[FaqEntry] = []
    chunks: list[Chunk] = []
    for number, item in enumerate(data, start=1):
        line = entry_lines[number - 1] if number - 1 < len(entry_lines) else None
        if not isinstance(item, dict):
            raise KnowledgeFileError(
                relative, f"entry {number} must be a mapping with question and answer", line
            )
        try:
            entry = FaqEntry(**item)
        except ValidationError as error:
            raise _field_error(relative, error, None, line, f"entry {number}") from None
        if not entry.question.strip() or not entry.answer.strip():
            raise KnowledgeFileError(
                relative, f"entry {number}: question and answer must not be empty", line
            )
        entries.append(entry)
        common: dict[str, Any] = {
            "path": relative,
            "title": entry.question.strip(),
            "section": entry.question.strip(),
            "answer": entry.answer.strip(),
            "audience": entry.audience,
            "product": entry.product,
            "tags": tuple(entry.tags),
            "url": entry.url,
        }
        chunks.append(
            Chunk(
                position=len(chunks),
                kind="section",
                embed_text=f"{entry.question.strip()}\n\n{entry.answer.strip()}",
                **common,
            )
        )
        for question in [entry.question, *entry.alternatives]:
            if question.strip():
                chunks.append(
                    Chunk(
                        position=len(chunks), kind="question", embed_text=question.strip(), **common
                    )
                )
    _check_faq_audiences(relative, text, entries, entry_lines)
    return chunks


def _check_faq_audiences(
    relative: str, text: str, entries: list[FaqEntry], entry_lines: list[int]
) -> None:
    """Refuse an entry whose lines say `audience: internal` but which is not read as internal."""
    for line in _internal_declarations(text):
        number = max(bisect_right(entry_lines, line), 1)
        if entries[min(number, len(entries)) - 1].audience != "internal":
            raise _not_read_as_internal(
                relative,
                line,
                f"entry {number}",
                "is the line inside another field, such as an indented answer? Write "
                "'audience: internal' as a field of the entry, lined up with its 'question:'",
            )


# ---------------------------------------------------------------- YAML helpers


class _DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: object, first: yaml.Mark, again: yaml.Mark) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key
        self.first = first
        self.again = again


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping.

    PyYAML keeps the last value silently: `audience: internal` then `audience: public` would
    publish the file.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: the base class says so
                continue
            if first is not key_node.start_mark:
                raise _DuplicateKeyError(key, first, key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(relative: str, text: str, first_line: int) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except _DuplicateKeyError as error:
        first, again = error.first.line + first_line, error.again.line + first_line
        raise KnowledgeFileError(
            relative,
            f"key {error.key!r} is given twice (lines {first} and {again}); YAML would keep only "
            "the last one. Keep one of them",
            again,
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + first_line if mark is not None else first_line
        problem = getattr(error, "problem", None) or "cannot be parsed"
        raise KnowledgeFileError(relative, f"invalid YAML: {problem}", line) from None


def _list_item_lines(text: str) -> list[int]:
    """1-based line of each top-level list item, for error messages."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [item.start_mark.line + 1 for item in node.value]


def _key_line(yaml_text: str, key: str, first_line: int) -> int | None:
    try:
        node = yaml.compose(yaml_text)
    except yaml.YAMLError:
        return None
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if key_node.value == key:
                return key_node.start_mark.line + first_line
    return None


def _field_error(
    relative: str,
    error: ValidationError,
    yaml_text: str | None,
    line: int | None,
    where: str,
) -> KnowledgeFileError:
    fields = FrontMatter.model_fields if where == "front matter" else FaqEntry.model_fields
    problem = field_problems(error, known_fields=fields)[0]
    field_name = str(problem.loc[0]) if problem.loc else ""
    if yaml_text is not None and field_name:
        line = _key_line(yaml_text, field_name, line or 1) or line
    message = f"{where}: {problem}"
    if isinstance(problem.given, bool) and problem.kind not in ("missing", "extra_forbidden"):
        message += (
            " (YAML reads yes/no/on/off/true/false as true or false: put the value in quotes)"
        )
    return KnowledgeFileError(relative, message, line)
