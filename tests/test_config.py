"""gigcx.yaml plus GIGCX_* environment variables; bad values fail at start, naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from gigcx.config import ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gigcx.yaml"
    path.write_text(text)
    return path


def test_paths_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path, "brand: acme\nknowledge:\n  path: docs\n")
    monkeypatch.chdir("/")
    settings = load_settings(config)
    assert settings.brand == "acme"
    assert settings.knowledge.path == tmp_path / "docs"
    assert settings.index.path == tmp_path / ".gigcx" / "index"
    assert settings.embeddings.model_id == "local:all-MiniLM-L6-v2"


def test_environment_variables_override_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path, "brand: acme\nindex:\n  path: idx\n")
    monkeypatch.setenv("GIGCX_INDEX__URL", "http://chroma.internal:8000")
    monkeypatch.setenv("GIGCX_BRAND", "acme-eu")
    settings = load_settings(config)
    assert settings.index.url == "http://chroma.internal:8000"
    assert settings.index.path == tmp_path / "idx"  # the rest of the section is kept
    assert settings.brand == "acme-eu"


def test_config_is_found_from_the_environment_or_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "brand: from-cwd\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().brand == "from-cwd"
    other = tmp_path / "other.yaml"
    other.write_text("brand: from-env\n")
    monkeypatch.setenv("GIGCX_CONFIG", str(other))
    assert load_settings().brand == "from-env"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "embeddings:\n  backend: magic\n",
            ["embeddings.backend", "'magic' is not allowed", "'local'", "'openai'"],
        ),
        ("brand: Not A Slug\n", ["brand:", "Not A Slug"]),
        (
            "knowledge:\n  chunk_size: 10\n",
            ["knowledge.chunk_size", "greater than or equal to 200"],
        ),
        (
            "knowledge:\n  chunk_size: 300\n  chunk_overlap: 300\n",
            ["chunk_overlap must be smaller"],
        ),
        ("knowlege:\n  path: docs\n", ["knowlege: is not a known field"]),
        ("index:\n  url: chroma:8000\n", ["index.url", "http://"]),
        ("embeddings:\n  backend: openai\n", ["embeddings", "needs `model`"]),
    ],
)
def test_bad_values_name_the_file_and_field(tmp_path: Path, text: str, expected: list[str]) -> None:
    config = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert message.startswith(str(config))
    for part in expected:
        assert part in message


def test_a_bad_environment_value_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIGCX_EMBEDDINGS__BACKEND", "bogus")
    with pytest.raises(ConfigError, match="GIGCX_EMBEDDINGS__BACKEND"):
        load_settings(write(tmp_path, "brand: acme\n"))


def test_invalid_yaml_and_missing_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gigcx.yaml:2: invalid YAML"):
        load_settings(write(tmp_path, "brand: acme\nname: x: y\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_settings(write(tmp_path, "- a list\n"))


def test_the_store_url_is_relative_to_the_config_file_and_gets_an_async_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path, "brand: acme\nstore:\n  url: sqlite:///data/chats.db\n")
    monkeypatch.chdir("/")
    assert load_settings(config).store.url == f"sqlite+aiosqlite:///{tmp_path}/data/chats.db"
    monkeypatch.setenv("GIGCX_STORE__URL", "postgresql://gigcx@db:5432/gigcx")
    assert load_settings(config).store.url == "postgresql+asyncpg://gigcx@db:5432/gigcx"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("store:\n  url: mysql://x/y\n", "store.url: must be a SQLite or PostgreSQL"),
        (
            "routing:\n  staff_topics:\n    orders: ['my order(']\n",
            "routing.staff_topics: orders: 'my order(' is not a valid regular",
        ),
        ("bot:\n  mode: llm\n", "needs llm.base_url and llm.model"),
        ("bot:\n  mode: gpt\n", "bot.mode: 'gpt' is not allowed; use one of: 'quote'"),
        ("bot:\n  answer_threshold: 2\n", "bot.answer_threshold: Input should be less than"),
        ("web:\n  widget_key: abc\n", "web.widget_key: is not a known field"),
        (
            "products:\n  - id: X 2\n    name: X2\n",
            "products.0.id: 'X 2' is not in the expected format",
        ),
    ],
)
def test_bad_front_line_settings_name_the_field(tmp_path: Path, text: str, words: str) -> None:
    config = write(tmp_path, "brand: acme\n" + text)
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert str(config) in str(error.value)
    assert words in str(error.value)
