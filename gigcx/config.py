"""Brand configuration: a `gigcx.yaml` per brand, overridable by `GIGCX_*` environment variables.

Relative paths in the file are resolved against the folder the file is in, so a brand's
repo can be checked out anywhere.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gigcx.default_patterns import DEFAULT_FRUSTRATION, DEFAULT_HUMAN_REQUEST, DEFAULT_STAFF_TOPICS
from gigcx.validation import field_problems, read_user_file, yaml_problem

CONFIG_FILE_NAME = "gigcx.yaml"
ENV_PREFIX = "GIGCX_"
ENV_NESTED_DELIMITER = "__"
LOCAL_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
# The entry point groups plugins register in (see gigcx.plugins); gigcx's own answerers and
# channels are registered there too, in its pyproject.toml.
ANSWERERS_GROUP = "gigcx.answerers"
CHANNELS_GROUP = "gigcx.channels"
BUILT_IN_ANSWERERS = ("quote", "llm")


def installed_plugin_names(group: str) -> list[str]:
    """The names registered in an entry point group (read from package metadata; nothing is
    imported): gigcx's own first, in their order, then the others by name."""
    names = {entry.name for entry in entry_points(group=group)}
    first = [name for name in BUILT_IN_ANSWERERS if name in names]
    return first + sorted(names - set(first))


def _one_of(names: list[str]) -> str:
    quoted = [repr(name) for name in names]
    if len(quoted) < 2:
        return "".join(quoted) or "(none installed)"
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


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


class StoreSettings(_Section):
    url: str = Field(
        "sqlite+aiosqlite:///.gigcx/gigcx.db",
        description="SQLAlchemy URL: a SQLite file (relative to the config file) or PostgreSQL.",
    )

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        # Accept the URLs people paste (sqlite:///x.db, postgresql://...) and pick the async
        # driver for them.
        for plain, driver in _ASYNC_DRIVERS.items():
            if value.startswith(plain):
                return driver + value[len(plain) :]
        if value.startswith(tuple(_ASYNC_DRIVERS.values())):
            return value
        raise ValueError(
            "must be a SQLite or PostgreSQL URL, e.g. sqlite:///.gigcx/gigcx.db or "
            "postgresql://user@127.0.0.1:5432/gigcx"
        )

    @property
    def sqlite_path(self) -> Path | None:
        """The database file when the store is a SQLite file, else None."""
        prefix = _ASYNC_DRIVERS["sqlite://"] + "/"
        if not self.url.startswith(prefix) or self.url.endswith(":memory:"):
            return None
        return Path(self.url[len(prefix) :])


_ASYNC_DRIVERS = {
    "sqlite://": "sqlite+aiosqlite://",
    "postgresql://": "postgresql+asyncpg://",
    "postgres://": "postgresql+asyncpg://",
}


class ProductSettings(_Section):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="As in front matter `product:`.")
    name: str = Field(description="How customers and experts see it, e.g. 'X2 headset'.")
    kind: str | None = Field(
        None, description="Products of one kind are 'the other model' of each other."
    )
    aliases: list[str] = Field(
        default_factory=list, description="Other words customers use for it, e.g. 'x-2'."
    )

    def mention_pattern(self) -> re.Pattern[str]:
        """Whole-word match of the id, the name or an alias, in any case."""
        words = sorted({self.id, self.name, *self.aliases}, key=len, reverse=True)
        alternatives = "|".join(re.escape(word) for word in words if word.strip())
        return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)


def _check_patterns(name: str, patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(
                f"{name}: {pattern!r} is not a valid regular expression ({error})"
            ) from None
    return patterns


class RoutingSettings(_Section):
    staff_examples: dict[str, list[str]] = Field(
        default_factory=dict,
        description="More example questions per staff topic, recognised by meaning; added to "
        "the shipped examples (gigcx/bot/phrases.py).",
    )
    staff_topics: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_STAFF_TOPICS.items()},
        description="Topics that need the customer's records, as regular expressions: to staff. "
        "A message that reads like the customer's own case goes to staff too (the shipped "
        "staff-topic model); `{}` means the brand has no staff topics at all.",
    )
    default_route: Literal["expert", "staff"] = Field(
        "expert", description="Where escalations that are not staff topics go."
    )

    @field_validator("staff_topics")
    @classmethod
    def _valid_topic_patterns(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for topic, patterns in value.items():
            _check_patterns(topic, patterns)
        return value


class LLMSettings(_Section):
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. .../v1.")
    model: str | None = Field(None, description="Chat model name.")
    api_key: SecretStr | None = Field(None, description="Key for the endpoint, if it needs one.")
    timeout_seconds: float = Field(20.0, gt=0, le=300)
    temperature: float = Field(0.1, ge=0, le=2)
    max_tokens: int = Field(600, ge=16, le=8000)


class RasaSettings(_Section):
    """`bot.rasa`: the Rasa server behind `bot.mode: rasa` (see README "Rasa")."""

    url: str = Field(
        "http://127.0.0.1:5005",
        description="The Rasa server, started with `rasa run --enable-api` (the REST channel "
        "and the HTTP API).",
    )
    token: SecretStr | None = Field(
        None, description="Rasa's `--auth-token`, if the server was started with one."
    )
    timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Longest wait for Rasa's reply before handing over."
    )
    handoff_intents: list[str] = Field(
        default_factory=lambda: ["human_handoff"],
        description="Intents that hand the conversation to a person (reason human_requested).",
    )
    fallback_intents: list[str] = Field(
        default_factory=lambda: ["nlu_fallback"],
        description="Intents meaning Rasa did not understand (reason rasa_fallback).",
    )
    fallback_actions: list[str] = Field(
        default_factory=lambda: ["action_default_fallback"],
        description="Actions meaning Rasa could not go on (reason rasa_fallback).",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")) or value[-3:] == "://":
            raise ValueError(f"{value!r} is not an http(s) URL such as http://127.0.0.1:5005")
        return value


class PhraseExamples(_Section):
    human_request: list[str] = Field(default_factory=list)
    frustration: list[str] = Field(default_factory=list)


class BotSettings(_Section):
    mode: str = Field(
        "quote",
        description="The answerer: quote (the best passage, no LLM), llm (a grounded LLM "
        "answer), or one an installed plugin adds (`gigcx plugins` lists them).",
    )
    answer_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Least answerability (0-1, the evidence that the best passage answers) to "
        "answer. Unset: the shipped model's operating point.",
    )
    related_threshold: float = Field(
        0.35,
        ge=0,
        le=1,
        description="Cosine of the best passage below which nothing related is known "
        "(low_confidence); above it, a question the knowledge base does not cover "
        "(expert_needed).",
    )
    history_turns: int = Field(6, ge=0, le=50, description="Earlier turns used for follow-ups.")
    human_request: list[str] = Field(default_factory=lambda: list(DEFAULT_HUMAN_REQUEST))
    examples: PhraseExamples = Field(
        default_factory=lambda: PhraseExamples(),
        description="More example phrases recognised by meaning; added to the shipped ones.",
    )
    frustration: list[str] = Field(default_factory=lambda: list(DEFAULT_FRUSTRATION))
    llm: LLMSettings = LLMSettings()
    rasa: RasaSettings = RasaSettings()

    @field_validator("human_request", "frustration")
    @classmethod
    def _valid_patterns(cls, value: list[str]) -> list[str]:
        return _check_patterns("pattern", value)

    @field_validator("mode")
    @classmethod
    def _installed_answerer(cls, value: str) -> str:
        installed = installed_plugin_names(ANSWERERS_GROUP)
        if value not in installed:
            # Reported like a choice among fixed values, naming the installed answerers.
            raise PydanticCustomError(
                "literal_error",
                "Input should be {expected}",
                {"expected": f"{_one_of(installed)} (the installed answerers)"},
            )
        return value

    @model_validator(mode="after")
    def _llm_mode_needs_a_model(self) -> BotSettings:
        if self.mode == "llm" and not (self.llm.base_url and self.llm.model):
            raise ValueError("mode 'llm' needs llm.base_url and llm.model")
        return self


class EscalationSettings(_Section):
    redact_personal_data: bool = Field(
        True,
        description="Mask e-mail addresses, phone, card and IBAN numbers in handover packets "
        "and in everything posted to Slack.",
    )
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR"],
        description="Countries (ISO 3166 codes) whose national phone formats are masked too; "
        "numbers with a + country code are masked whatever the country.",
    )
    claim_timeout_seconds: int = Field(
        300, ge=10, description="Unclaimed for this long: the handoff is offered again."
    )
    sweep_seconds: float = Field(
        5.0, ge=0.1, le=60, description="How often waiting handoffs' claim deadlines are checked."
    )
    resolve_timeout_seconds: int = Field(
        86400, ge=60, description="Claimed but not resolved this long: offered again, expert told."
    )
    fallback_after_seconds: int = Field(
        900,
        ge=10,
        description="Unclaimed by a gig expert for this long (since the escalation): the "
        "handoff moves to the staff route.",
    )
    experts_file: Path = Field(
        Path("experts.yaml"), description="The expert registry `gigcx experts sync` reads."
    )
    payout_per_resolution: Decimal = Field(
        Decimal("0"), ge=0, max_digits=10, decimal_places=2, description="Paid to a gig expert."
    )
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, value: list[str]) -> list[str]:
        import phonenumbers

        codes = [code.strip().upper() for code in value]
        unknown = [code for code in codes if code not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(
                f"unknown country code(s) {', '.join(unknown)}: use ISO 3166 codes such as GB, US"
            )
        return codes


class WidgetSettings(_Section):
    title: str = Field("", description="Widget header (default: the brand's name + ' support').")
    color: str = Field(
        "#1f6feb", pattern=r"^#[0-9a-fA-F]{6}$", description="Brand colour, e.g. #0f766e."
    )
    greeting: str = Field(
        "Hi! Ask me anything, or ask for a person at any time.",
        max_length=500,
        description="The first thing the widget says.",
    )
    expert_wait_minutes: int = Field(
        5, ge=1, le=1440, description="'usually under N minutes' in the waiting banner."
    )


class IdentitySettings(_Section):
    mode: Literal["optional", "required"] = Field(
        "optional",
        description="required: only customers signed in on the brand's site (verified by an "
        "HMAC-SHA256 of their user id with `secret`) can start a conversation.",
    )
    secret: SecretStr | None = Field(
        None, description="Shared with the brand's backend, which computes the user hash."
    )

    @model_validator(mode="after")
    def _required_needs_a_secret(self) -> IdentitySettings:
        if self.mode == "required" and self.secret is None:
            raise ValueError("mode 'required' needs `secret` (set it with GIGCX_IDENTITY__SECRET)")
        return self


class SlackLimits(_Section):
    """How fast gigcx calls Slack's Web API: at most Slack's documented rates
    (api.slack.com/apis/rate-limits), shared by every server process through Redis. A 429
    pauses the method for everyone until its Retry-After has passed."""

    posts_per_channel_per_second: float = Field(
        1.0, gt=0, le=50, description="chat.postMessage into one channel or DM (Slack: about 1)."
    )
    posts_per_minute: float = Field(
        300.0,
        gt=0,
        le=10_000,
        description="chat.postMessage across the workspace (Slack: 'several hundred').",
    )
    tier3_per_minute: float = Field(
        50.0,
        gt=0,
        le=10_000,
        description="Each Tier 3 method (chat.update, chat.delete, reactions.add, "
        "conversations.history, conversations.info): Slack allows 50+ a minute.",
    )
    card_wait_seconds: float = Field(
        2.0,
        ge=0,
        le=60,
        description="A new handoff gets a card of its own when the channel can take it within "
        "this long; otherwise it goes on the channel's queue board.",
    )
    board_seconds: float = Field(
        3.0, ge=1, le=60, description="How often a changed queue board is updated in Slack."
    )


class SlackSettings(_Section):
    bot_token: SecretStr | None = Field(
        None, description="xoxb-... bot token; set it to turn the Slack connector on."
    )
    signing_secret: SecretStr | None = Field(
        None,
        description="Verifies that requests come from Slack; required with a token, unless "
        "the app uses Socket Mode.",
    )
    app_token: SecretStr | None = Field(
        None,
        description="xapp-... app-level token (connections:write): set it to receive Slack's "
        "events over Socket Mode, with no public URL, instead of at POST /slack/events.",
    )
    expert_channel: str | None = Field(None, description="Channel id for gig expert handoffs.")
    staff_channel: str | None = Field(None, description="Channel id for staff handoffs.")
    api_url: str = Field(
        "https://slack.com/api/", description="Slack Web API base URL (tests use a local one)."
    )
    limits: SlackLimits = SlackLimits()

    @model_validator(mode="after")
    def _signed_requests_only(self) -> SlackSettings:
        if self.bot_token is not None:
            if self.signing_secret is None and not self.socket_mode:
                raise ValueError(
                    "the Slack connector does not start without signing_secret: every request "
                    "from Slack is verified (set GIGCX_SLACK__SIGNING_SECRET)"
                )
            if not (self.expert_channel and self.staff_channel):
                raise ValueError("a Slack bot_token needs expert_channel and staff_channel")
        return self

    @property
    def enabled(self) -> bool:
        return self.bot_token is not None

    @property
    def socket_mode(self) -> bool:
        return self.app_token is not None


class RedisSettings(_Section):
    url: str | None = Field(
        None,
        description="Redis URL (redis://host:6379/0) for running several server processes: "
        "events, rate limits and Slack retries are shared through it. Unset: one process.",
    )

    namespace: str = Field(
        "gigcx",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Prefix of every Redis key and channel, to share one Redis between "
        "deployments.",
    )

    @field_validator("url")
    @classmethod
    def _url_is_redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "must start with redis://, rediss:// or unix://, e.g. redis://127.0.0.1:6379/0"
            )
        return value


MIN_ADMIN_TOKEN = 16


class WebSettings(_Section):
    host: str = Field("127.0.0.1", description="Address `gigcx serve` listens on.")
    port: int = Field(8080, ge=1, le=65535)
    widget_keys: list[str] = Field(
        default_factory=list, description="Public keys a widget may start conversations with."
    )
    allowed_origins: list[str] = Field(
        default_factory=lambda: ["*"], description="Sites allowed to embed the widget (CORS)."
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Load balancers whose X-Forwarded-For gives the client's address (for "
        "the per-address limit); `*` trusts any.",
    )
    max_body_bytes: int = Field(
        262_144,
        ge=1024,
        description="Largest request body; a larger one is refused (413) before it is read.",
    )
    max_message_chars: int = Field(4000, ge=1, le=100_000)
    max_attributes: int = Field(20, ge=0, le=1000, description="Customer attributes per chat.")
    max_attribute_chars: int = Field(
        1000, ge=1, le=100_000, description="Longest customer attribute value."
    )
    messages_per_minute_per_conversation: int = Field(20, ge=1)
    messages_per_minute_per_ip: int = Field(
        60, ge=1, description="Messages, new conversations and handoff calls from one address."
    )
    handoff_calls_per_minute_per_conversation: int = Field(
        5, ge=1, description="Calls to /handoff and /contact together, per conversation."
    )
    console_token: SecretStr | None = Field(
        None,
        description="Enables the local expert console at /console (a stand-in for Slack); "
        "experts sign in with this token (`gigcx serve --console` makes one for the run).",
    )
    console_failures_per_minute_per_ip: int = Field(
        10, ge=1, description="Wrong console tokens from one address before it must wait."
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Enables the brand team's dashboard at /admin; the team signs in with "
        "this token (GIGCX_WEB__ADMIN_TOKEN). At least 16 characters, and not the console "
        "token or a widget key.",
    )
    admin_failures_per_minute_per_ip: int = Field(
        10, ge=1, description="Wrong admin tokens from one address before it must wait."
    )

    @model_validator(mode="after")
    def _admin_token_is_its_own(self) -> WebSettings:
        if self.admin_token is None:
            return self
        token = self.admin_token.get_secret_value()
        if len(token) < MIN_ADMIN_TOKEN:
            raise ValueError(
                f"web.admin_token: must be at least {MIN_ADMIN_TOKEN} characters; make one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        if self.console_token is not None and token == self.console_token.get_secret_value():
            raise ValueError("web.admin_token: must differ from web.console_token")
        if token in self.widget_keys:
            raise ValueError(
                "web.admin_token: must differ from every key in web.widget_keys (those are public)"
            )
        return self


class EmailSettings(_Section):
    """Expert replies by e-mail to customers who left an address and are not reading the
    chat, and their e-mailed replies back into the conversation (see README, "E-mail")."""

    enabled: bool = Field(False, description="Send expert replies and resolutions by e-mail.")
    smtp_host: str | None = Field(None, description="SMTP server, e.g. smtp.mailgun.org.")
    smtp_port: int = Field(587, ge=1, le=65535, description="587 with STARTTLS, 465 with TLS.")
    smtp_username: str | None = Field(None, description="SMTP login, if the server needs one.")
    smtp_password: SecretStr | None = Field(None, description="GIGCX_EMAIL__SMTP_PASSWORD.")
    smtp_starttls: bool = Field(True, description="Upgrade the connection with STARTTLS.")
    smtp_tls: bool = Field(False, description="TLS from the first byte (port 465).")
    smtp_timeout_seconds: float = Field(20.0, gt=0, le=120, description="Per SMTP step.")
    from_address: str | None = Field(None, description="Sender, e.g. help@kestrel.example.")
    from_name: str = Field("", max_length=100, description="Sender name (default: the brand's).")
    reply_domain: str | None = Field(
        None,
        description="Domain whose mail the inbound service posts to POST /email/inbound; "
        "replies go to reply+<conversation>.<signature>@<reply_domain>. Unset: no replies.",
    )
    inbound_signing_key: SecretStr | None = Field(
        None, description="The inbound service's webhook signing key (Mailgun's format)."
    )
    link_secret: SecretStr | None = Field(
        None, description="Signs the links back to the conversation and the reply addresses."
    )
    public_base_url: str | None = Field(
        None, description="Where customers reach this server, e.g. https://help.kestrel.example."
    )
    chat_page_url: str | None = Field(
        None,
        description="A page of the brand's site with the widget, where a link opens the "
        "conversation (default: <public_base_url>/demo).",
    )
    send_delay_seconds: int = Field(
        120,
        ge=0,
        le=86_400,
        description="A reply still unread this long after it was written goes by e-mail.",
    )
    link_lifetime_seconds: int = Field(
        7 * 86_400, ge=300, le=90 * 86_400, description="How long a link in an e-mail works."
    )

    @field_validator("public_base_url", "chat_page_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a test server)")
        return value.rstrip("/") if value is not None else None

    @field_validator("from_address")
    @classmethod
    def _looks_like_address(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", value):
            raise ValueError("must be an e-mail address such as help@kestrel.example")
        return value

    @model_validator(mode="after")
    def _enabled_needs_a_server(self) -> EmailSettings:
        if not self.enabled:
            return self
        needed = ["smtp_host", "from_address", "link_secret", "public_base_url"]
        if self.reply_domain is not None:
            needed.append("inbound_signing_key")
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(
                "enabled e-mail needs "
                + ", ".join(f"email.{name} (GIGCX_EMAIL__{name.upper()})" for name in missing)
            )
        if self.smtp_starttls and self.smtp_tls:
            raise ValueError("choose email.smtp_tls (port 465) or email.smtp_starttls, not both")
        assert self.link_secret is not None
        if len(self.link_secret.get_secret_value()) < 16:
            raise ValueError("email.link_secret must be at least 16 characters (random)")
        return self


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
    products: list[ProductSettings] = Field(default_factory=list)
    routing: RoutingSettings = RoutingSettings()
    bot: BotSettings = BotSettings()
    escalation: EscalationSettings = EscalationSettings()
    store: StoreSettings = StoreSettings()
    web: WebSettings = WebSettings()
    widget: WidgetSettings = WidgetSettings()
    slack: SlackSettings = SlackSettings()
    redis: RedisSettings = RedisSettings()
    identity: IdentitySettings = IdentitySettings()
    email: EmailSettings = EmailSettings()
    plugins: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Settings of installed plugins, by plugin name; each is checked by its "
        "plugin's own settings model (gigcx.plugins).",
    )
    # Where the settings were read from, for plugins' error messages (see load_settings).
    _source: str = PrivateAttr("environment")

    @field_validator("plugins")
    @classmethod
    def _installed_plugins(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # gigcx's own plugins read their own sections (bot.llm, slack:, email:), not plugins:.
        installed = [
            entry.name
            for group in (ANSWERERS_GROUP, CHANNELS_GROUP)
            for entry in entry_points(group=group)
            if entry.dist is None or entry.dist.name != "gigcx"
        ]
        unknown = [name for name in value if name not in installed]
        if unknown:
            raise ValueError(
                f"no installed plugin is named {_one_of(unknown)}; installed: "
                f"{_one_of(sorted(set(installed)))} (`gigcx plugins` lists them)"
            )
        return value

    @property
    def source(self) -> str:
        """The config file these settings were read from, or "environment"."""
        return self._source

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

    def product(self, product_id: str | None) -> ProductSettings | None:
        return next((p for p in self.products if p.id == product_id), None)


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
    settings = _resolve_paths(settings, base_dir)
    settings._source = source
    return settings


def plugin_settings_error(source: str, plugin: str, error: ValidationError) -> ConfigError:
    """A plugin's settings (`plugins.<plugin>` in the file) that its model refused, reported
    like gigcx's own: `plugins.<plugin>.<field>: problem`, naming the file."""
    return ConfigError(_describe_validation_error(source, error, ("plugins", plugin)))


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    text = read_user_file(path, "config file", ConfigError)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(yaml_problem(path, error)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def _describe_validation_error(
    source: str, error: ValidationError, prefix: tuple[str, ...] = ()
) -> str:
    lines = [f"{source}: invalid configuration"]
    for problem in field_problems(error, whole="settings", quote_values=True):
        loc = (*prefix, *problem.loc)
        location = ".".join(str(part) for part in loc)
        env_name = ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(p) for p in loc).upper()
        lines.append(f"  {location}: {problem.message}  [set in the file or {env_name}]")
    return "\n".join(lines)


def _resolve_paths(settings: Settings, base_dir: Path) -> Settings:
    def resolve(path: Path) -> Path:
        return path if path.is_absolute() else (base_dir / path).resolve()

    store = settings.store
    sqlite_path = store.sqlite_path
    if sqlite_path is not None and not sqlite_path.is_absolute():
        store = StoreSettings(url=f"sqlite+aiosqlite:///{resolve(sqlite_path)}")
    return settings.model_copy(
        update={
            "store": store,
            "knowledge": settings.knowledge.model_copy(
                update={"path": resolve(settings.knowledge.path)}
            ),
            "index": settings.index.model_copy(update={"path": resolve(settings.index.path)}),
            "escalation": settings.escalation.model_copy(
                update={"experts_file": resolve(settings.escalation.experts_file)}
            ),
        }
    )
