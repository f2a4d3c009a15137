"""The chat API's request and response bodies (they make the OpenAPI docs at /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MessageOut(BaseModel):
    seq: int
    author: str
    text: str
    citations: list[dict[str, Any]]
    created_at: str


class NewConversation(_Body):
    widget_key: str = Field(description="The brand's public widget key (from its gigcx.yaml).")
    user_id: str | None = Field(
        None, min_length=1, max_length=128, description="The brand's id of a signed-in customer."
    )
    user_hash: str | None = Field(
        None,
        max_length=128,
        description="Hex HMAC-SHA256 of user_id with the brand's identity secret.",
    )
    attributes: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        max_length=20,
        description="Customer attributes for the expert (name, email, plan, ...).",
    )


class NewRating(_Body):
    score: int = Field(ge=1, le=5, description="1 (bad) to 5 (great).")
    comment: str = Field("", max_length=2000)


class NewContact(_Body):
    email: str = Field(
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Where to answer when nobody is available in the chat.",
    )


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
    text: str = Field(description="What the customer wrote (1 to 4,000 characters).")


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
