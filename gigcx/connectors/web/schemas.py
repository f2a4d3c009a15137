"""The chat API's request and response bodies (they make the OpenAPI docs at /docs)."""

from __future__ import annotations

import math
import unicodedata
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
)
from pydantic_core import PydanticCustomError

MAX_SEQ = 2**31 - 1  # sequence numbers are 32-bit in the store


def _storable(value: object) -> object:
    # PostgreSQL cannot keep a NUL character, no UTF-8 store a lone surrogate, and no JSON
    # column NaN or infinity; refused here, before any constraint or store sees them.
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("number_unstorable", "must be a finite number")
    if isinstance(value, str):
        if "\x00" in value:
            raise PydanticCustomError("text_unstorable", "must not contain a NUL character")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise PydanticCustomError(
                    "text_unstorable", "must not contain a lone surrogate"
                ) from None
    return value


# Characters that show nothing on their own: spaces and control characters, format characters
# (zero-width spaces and joiners, word joiner, BOM, soft hyphen, bidi controls, tags), the
# letters that render blank (Hangul fillers, Braille blank) and the marks that only change
# the character before them (combining grapheme joiner, variation selectors).
# Marks (Mn, Me) show only on a character before them: a message of marks alone shows nothing.
_INVISIBLE_KINDS = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me"})
_BLANK_CHARACTERS = frozenset("\u115f\u1160\u2800\u3164\uffa0\u034f")


def _shows_nothing(char: str) -> bool:
    return (
        unicodedata.category(char) in _INVISIBLE_KINDS
        or char in _BLANK_CHARACTERS
        or "\u180b" <= char <= "\u180f"
        or "\ufe00" <= char <= "\ufe0f"
        or "\U000e0100" <= char <= "\U000e01ef"
    )


def _visible(value: str) -> str:
    # A message of zero-width spaces or bidi controls is as empty as one of spaces.
    if all(_shows_nothing(char) for char in value):
        raise PydanticCustomError("text_empty", "must not be empty")
    return value


# Every text a client sends that may be stored or shown, or that the server compares, hashes
# or looks up: in a body, a path, a query string or a header.
Text = Annotated[str, BeforeValidator(_storable)]
# A message someone will read: not empty, and not only characters that show nothing.
MessageText = Annotated[Text, AfterValidator(_visible)]
AttributeValue = Annotated[str | int | float | bool, BeforeValidator(_storable)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MessageOut(BaseModel):
    seq: int
    author: str
    text: str
    citations: list[dict[str, Any]]
    created_at: str
    quick_replies: list[str] = Field(
        default_factory=list,
        description="Buttons offered under a bot reply: sending one's text picks it.",
    )
    rateable: bool = Field(
        False,
        description="A bot answer the customer may rate helpful or not "
        "(PUT /v1/conversations/{conversation_id}/messages/{seq}/rating).",
    )
    rating: bool | None = Field(
        None,
        description="The customer's rating of this bot answer (true: helpful), null when "
        "unrated; only GET .../messages fills it in.",
    )


class NewConversation(_Body):
    widget_key: Text = Field(description="The brand's public widget key (from its gigcx.yaml).")
    user_id: Text | None = Field(
        None, min_length=1, max_length=128, description="The brand's id of a signed-in customer."
    )
    user_hash: Text | None = Field(
        None,
        max_length=128,
        description="Hex HMAC-SHA256 of user_id with the brand's identity secret.",
    )
    attributes: dict[str, AttributeValue] = Field(
        default_factory=dict,
        description="Customer attributes for the expert (name, email, plan, ...): at most 20 "
        "(web.max_attributes) of at most 1,000 characters each (web.max_attribute_chars).",
    )


class NewRating(_Body):
    score: int = Field(ge=1, le=5, description="1 (bad) to 5 (great).")
    comment: Text = Field("", max_length=2000)


class AnswerRatingIn(_Body):
    # Strict: "yes", 1 or "false" is a mistake to name, not a vote to guess.
    helpful: StrictBool = Field(description="true: the answer helped (👍); false: it did not (👎).")


class NewContact(_Body):
    email: Text = Field(
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Where to answer when nobody is available in the chat.",
    )


class ReadReceipt(_Body):
    seq: int = Field(ge=0, le=2**31 - 1, description="The newest message the customer has seen.")


class WidgetConfig(BaseModel):
    brand: str
    title: str
    color: str
    greeting: str
    expert_wait_minutes: int
    identity_required: bool


class HandoverOut(BaseModel):
    replies: list[MessageOut]
    state: str


class NewMessage(_Body):
    text: MessageText = Field(description="What the customer wrote (1 to 4,000 characters).")


class ConversationOut(BaseModel):
    conversation_id: str
    brand: str
    state: str
    last_seq: int


class ConversationCreated(ConversationOut):
    token: str = Field(
        description=(
            "Send as `Authorization: Bearer <token>`; on the WebSocket, offer the subprotocols "
            "`gigcx.v1` and `token.<token>`. Never put it in a URL: URLs get logged."
        )
    )


class TurnOut(BaseModel):
    message: MessageOut = Field(description="The customer's message as stored.")
    replies: list[MessageOut] = Field(description="What the bot said (empty when a person has it).")
    state: str


class MessagesOut(BaseModel):
    messages: list[MessageOut]
    state: str
    last_seq: int


class ErrorOut(BaseModel):
    detail: str
