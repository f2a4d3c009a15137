"""Brand configuration: a `gigcx.yaml` per brand, overridable by `GIGCX_*` environment variables.

Relative paths in the file are resolved against the folder the file is in, so a brand's
repo can be checked out anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_FILE_NAME = "gigcx.yaml"
ENV_PREFIX = "GIGCX_"
ENV_NESTED_DELIMITER = "__"
LOCAL_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


class ConfigError(Exception):
    """A configuration problem a user can fix; the message names the file and field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KnowledgeSettings(_Section):
    path: Path = Field(Path("knowledge"), description="Folder of Markdown and *.faq.yml files.")
    chunk_size: int = Field(800, ge=200, le=4000, description="Longest chunk, in characters.")
    chunk_overlap: int = Field(
        120, ge=0, le=1000, description="Overlap when a long section is split."
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> KnowledgeSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


class IndexSettings(_Section):
    path: Path = Field(Path(".gigcx/index"), description="Chroma folder (embedded default).")
    url: str | None = Field(None, description="Chroma server URL; when set, `path` is not used.")

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://, e.g. http://127.0.0.1:8000")
        return value


class EmbeddingSettings(_Section):
    backend: Literal["local", "openai"] = Field(
        "local", description="local: all-MiniLM-L6-v2 on the CPU; openai: any compatible endpoint."
    )
    model: str | None = Field(None, description="Model name for the openai backend.")
    base_url: str | None = Field(None, description="Endpoint for the openai backend.")
    api_key: SecretStr | None = Field(None, description="Key for the openai backend.")
    batch_size: int = Field(64, ge=1, le=2048)

    @model_validator(mode="after")
    def _openai_needs_a_model(self) -> EmbeddingSettings:
        if self.backend == "openai" and not self.model:
            raise ValueError("backend 'openai' needs `model` (e.g. text-embedding-3-small)")
        return self

    @property
    def model_id(self) -> str:
        """The identity recorded in the index, so vectors of two models are never mixed."""
        if self.backend == "local":
            return f"local:{LOCAL_EMBEDDING_MODEL}"
        return f"openai:{self.model}"


class Settings(BaseSettings):
    """Everything one brand's gigcx deployment is configured with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
    )

    brand: str = Field(
        "default",
        pattern=r"^[a-z0-9][a-z0-9-]{0,48}[a-z0-9]$",
        description="Short id: lowercase letters, digits and dashes.",
    )
    name: str = Field("", description="Display name of the brand.")
    knowledge: KnowledgeSettings = KnowledgeSettings()
    index: IndexSettings = IndexSettings()
    embeddings: EmbeddingSettings = EmbeddingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init arguments; environment variables override it.
        return (env_settings, init_settings)

    @property
    def display_name(self) -> str:
        return self.name or self.brand


def find_config(explicit: Path | None) -> Path | None:
    """The config file to use: the given one, else $GIGCX_CONFIG, else ./gigcx.yaml if present."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if from_env:
        return Path(from_env)
    default = Path.cwd() / CONFIG_FILE_NAME
    return default if default.is_file() else None


def load_settings(config_path: Path | None = None, **overrides: Any) -> Settings:
    """Read the brand's settings from `config_path` (if any) and the environment.

    Raises ConfigError naming the file and field when something is wrong.
    """
    path = find_config(config_path)
    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    source = "environment"
    if path is not None:
        source = str(path)
        data = _read_yaml_mapping(path)
        base_dir = path.resolve().parent
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    try:
        settings = Settings(**data)
    except ValidationError as error:
        raise ConfigError(_describe_validation_error(source, error)) from None
    return _resolve_paths(settings, base_dir)


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file ({error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def _describe_validation_error(source: str, error: ValidationError) -> str:
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        env_name = ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(p) for p in item["loc"]).upper()
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling)"
        elif item["type"] == "literal_error":
            expected = item.get("ctx", {}).get("expected", "")
            message = f"{item['input']!r} is not allowed; use one of: {expected}"
        elif "input" in item and not isinstance(item["input"], dict):
            message = f"{message} (got {item['input']!r})"
        lines.append(f"  {field}: {message}  [set in the file or {env_name}]")
    return "\n".join(lines)


def _resolve_paths(settings: Settings, base_dir: Path) -> Settings:
    def resolve(path: Path) -> Path:
        return path if path.is_absolute() else (base_dir / path).resolve()

    return settings.model_copy(
        update={
            "knowledge": settings.knowledge.model_copy(
                update={"path": resolve(settings.knowledge.path)}
            ),
            "index": settings.index.model_copy(update={"path": resolve(settings.index.path)}),
        }
    )
