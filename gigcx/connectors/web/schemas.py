"""The chat API's request and response bodies (they make the OpenAPI docs at /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewConversation(_Body):
    widget_key: str = Field(description="The brand's public widget key (from its gigcx.yaml).")
    customer_id: str | None = Field(
        None, max_length=128, description="The brand's id for a signed-in customer, if any."
    )
    attributes: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Customer attributes shown to the expert (plan, ...)."
    )


class NewMessage(_Body):
    text: str = Field(description="What the customer wrote (1 to 4,000 characters).")


class MessageOut(BaseModel):
    seq: int
    author: str
    text: str
    citations: list[dict[str, Any]]
    created_at: str


class ConversationOut(BaseModel):
    conversation_id: str
    brand: str
    state: str
    last_seq: int


class ConversationCreated(ConversationOut):
    token: str = Field(
        description="Send as `Authorization: Bearer <token>` (or ?token= on the WebSocket)."
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
