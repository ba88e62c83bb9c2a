"""A chat turn's request: the body of ``POST /chat`` and of a WebSocket ``chat`` frame,
checked (kinds, options, storable text) before anything is stored."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from sluice.chat.attachments import MAX_FILES, AttachmentIn
from sluice.errors import RequestError
from sluice.wire.storable import Unstorable, check_text, storable_json

#: Options a turn may set on the model call (the rest of the OpenAI body is the gateway's).
TURN_OPTIONS = {
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "tools",
    "tool_choice",
    "sim",
}


#: Text that is stored or looked up in the database: a NUL or an unpaired surrogate is
#: a 400 here, before anything is stored, not a driver error half-way through a turn.
_Text = Annotated[str, AfterValidator(check_text)]
#: Stored as the conversation's options: nesting, size and every value checked.
_Options = Annotated[dict[str, Any], AfterValidator(storable_json)]


class Edit(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    message_id: _Text = Field(min_length=1)
    content: _Text = Field(min_length=1)


class TurnRequest(BaseModel):
    """The body of ``POST /chat`` and of a WebSocket ``chat`` frame."""

    model_config = ConfigDict(extra="forbid", strict=True)

    conversation_id: _Text | None = None
    message: _Text | None = Field(default=None, min_length=1)
    #: A stateless turn: sent on, never stored (its nesting is checked with the request).
    messages: list[dict[str, Any]] | None = None
    model: _Text | None = None
    system: _Text | None = None
    options: _Options | None = None
    #: Answer the last question again (a new version of the last answer).
    regenerate: bool = False
    #: Replace an earlier question (a new version of it) and answer that.
    edit: Edit | None = None
    #: Carry on an answer that was stopped, interrupted or cut off at the token limit:
    #: the new text is appended to that same message (``continue`` is a Python keyword).
    continue_id: _Text | None = Field(default=None, min_length=1)
    #: Files sent with ``message`` (``chat/attachments.py``): checked when the turn starts.
    attachments: list[AttachmentIn] | None = Field(default=None, max_length=MAX_FILES)

    @model_validator(mode="after")
    def _one_kind(self) -> TurnRequest:
        kinds = sum(
            [
                self.message is not None,
                self.messages is not None,
                self.regenerate,
                bool(self.edit),
                self.continue_id is not None,
            ]
        )
        if kinds != 1:
            raise ValueError("give exactly one of message, messages, regenerate, edit, continue_id")
        if (self.regenerate or self.edit or self.continue_id) and not self.conversation_id:
            raise ValueError("regenerate, edit and continue_id need a conversation_id")
        if self.attachments and self.message is None:
            raise ValueError("attachments go with a new message only")
        if self.messages is not None and self.conversation_id:
            raise ValueError("messages (a stateless turn) cannot go with a conversation_id")
        unknown = set(self.options or {}) - TURN_OPTIONS
        if unknown:
            raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return self


def parse_turn(data: Any, *, max_json_bytes: int | None = None) -> TurnRequest:
    """A turn's body -> TurnRequest, or RequestError (400) naming the field. Stored JSON
    (``options``) may serialise to ``max_json_bytes`` (default: the settings' default)."""
    context = {} if max_json_bytes is None else {"max_json_bytes": max_json_bytes}
    try:
        return TurnRequest.model_validate(data, context=context)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(str(part) for part in error["loc"]) or None
        message = error["msg"].removeprefix("Value error, ")
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, Unstorable) and cause.path:
            # Named down to the value inside the field: 'options.a.b'.
            loc = ".".join([*(str(part) for part in error["loc"][:-1]), cause.path])
            message = cause.problem
        raise RequestError(
            f"Invalid value for '{loc}': {message}" if loc else message, param=loc
        ) from None
