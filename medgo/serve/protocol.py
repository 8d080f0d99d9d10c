"""The OpenAI wire format (the subset MedGo serves) plus the feedback, review and admin bodies.

Requests ignore fields they do not know (clients send many), but every field they do know is
checked; a bad one is answered 400 with an OpenAI error object naming it.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from medgo.serve.store import parse_age

MAX_STOP = 4


class Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(Request):
    type: Literal["text"]
    text: str = Field(max_length=200_000)


class ChatMessage(Request):
    role: Literal["system", "user", "assistant"]
    content: Annotated[str, Field(max_length=200_000)] | Annotated[list[TextPart], Field(max_length=256)]
    name: str | None = Field(None, max_length=64)

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(Request):
    include_usage: bool = False


class Sampling(Request):
    """Fields shared by chat and text completions."""

    model: str = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1, description="tokens to generate; the server's limit applies")
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = Field(None, description=f"up to {MAX_STOP} stop strings")
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="only 1 is supported")
    user: str | None = Field(None, max_length=256)
    ignore_eos: bool = Field(False, description="extension (as in vLLM): keep generating past end of sequence")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings")
        if any(not s or len(s) > 256 for s in stops):
            raise ValueError("stop strings must have 1 to 256 characters")
        return stops


class ChatCompletionRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=512)
    max_completion_tokens: int | None = Field(None, ge=1, description="newer name of max_tokens")


class CompletionRequest(Sampling):
    prompt: str = Field(min_length=1, max_length=200_000)


class FeedbackRequest(Request):
    response_id: str = Field(min_length=1, max_length=64)
    verdict: Literal["acceptable", "unacceptable"]
    corrected_answer: str | None = Field(None, max_length=200_000)
    comment: str | None = Field(None, max_length=20_000)
    reviewer: None = Field(None, description="not accepted: the reviewer is the name of the API key that posts the feedback")

    @field_validator("reviewer", mode="before")
    @classmethod
    def _reviewer_is_the_key(cls, value):
        if value is not None:
            raise ValueError("the reviewer is the name of the API key that posts the feedback; leave it out")
        return value


class PurgeRequest(Request):
    older_than: str = Field(pattern=r"^[1-9][0-9]{0,5}[hdw]$", description="age of the stored completions to purge: 90d, 12w, 48h (at most 100 years)")
    mode: Literal["delete", "deidentify"] = "delete"

    @field_validator("older_than")
    @classmethod
    def _age_ok(cls, value: str) -> str:
        parse_age(value)
        return value


# ------------------------------------------------------------------------- responses
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class TextChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "medgo"
    parent: str | None = None
    version: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class FeedbackResponse(BaseModel):
    object: Literal["feedback"] = "feedback"
    id: int
    response_id: str
    verdict: str
    duplicate: bool
    supersedes: int | None = None
    """The id of the same reviewer's earlier judgement of this response that this one replaces."""


class ReviewItem(BaseModel):
    response_id: str
    created: str
    model: str
    endpoint: str
    base_version: str | None = None
    adapter: str | None = None
    adapter_version: str | None = None
    prompt: str
    messages: list[dict] | None
    answer: str


class ReviewQueue(BaseModel):
    object: Literal["list"] = "list"
    data: list[ReviewItem]
    deidentified: dict[str, int]
    """Identifiers replaced in this page, by type."""
    models: list[str] = []
    """Served model names with completions awaiting judgement (the ``model`` filter's choices)."""


class KeyInfo(BaseModel):
    object: Literal["api_key"] = "api_key"
    name: str
    scopes: list[str]


class VersionStats(BaseModel):
    model: str
    base_version: str
    adapter: str | None
    adapter_version: str | None
    status: str | None = None
    """The model registry's status of a flywheel version (``adapter`` is then its registry version)."""
    parent: str | None = None
    answers: int
    judgements: int
    """Current judgements (each reviewer's newest on each answer)."""
    acceptable: int
    acceptance_rate: float | None
    interval_95: tuple[float, float] | None
    """95% Wilson score interval of the acceptance rate."""
    last_served: str


class VersionStatsList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VersionStats]


class PurgeResponse(BaseModel):
    object: Literal["purge"] = "purge"
    before: str
    mode: str
    completions: int
    feedback: int
    replaced: dict[str, int]


class AuditEntry(BaseModel):
    id: int
    created: str
    actor: str
    source: str
    action: str
    arguments: dict
    rows: int
    detail: dict | None


class AuditLog(BaseModel):
    object: Literal["list"] = "list"
    data: list[AuditEntry]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error", 413: "invalid_request_error", 503: "server_overloaded", 504: "timeout"}


class APIError(Exception):
    """Raised inside routes; answered as an OpenAI error object with ``status``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.param, self.code, self.headers)


def error_response(status: int, message: str, param: str | None = None, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"), "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())
