"""``[[models]]``: the models clients can ask for, how each is reached, retried, timed
and priced — and the models a gateway serves when the config names none."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

#: What `OPENAI_API_KEY` alone adds: the usual OpenAI chat models, served under their own names.
OPENAI_DEFAULT_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
)


class Timeouts(BaseModel):
    """Seconds; each expiry is its own error (code ``<name>_timeout``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Opening the TCP (and TLS) connection to the upstream.
    connect: float = Field(default=10.0, gt=0)
    #: From the request to the first token (text, reasoning or tool call).
    first_token: float = Field(default=300.0, gt=0)
    #: Longest silence between two chunks once tokens flow.
    idle: float = Field(default=120.0, gt=0)
    #: The whole answer.
    total: float = Field(default=1800.0, gt=0)


class RetryPolicy(BaseModel):
    """Retries of one model before the first byte reaches the client."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Attempts in all, the first included (1 = no retry).
    attempts: int = Field(default=3, ge=1, le=20)
    backoff_initial: float = Field(default=0.25, ge=0)
    backoff_max: float = Field(default=8.0, ge=0)
    #: No retry starts after this many seconds spent on this model.
    max_elapsed: float = Field(default=30.0, ge=0)
    #: An upstream ``Retry-After`` longer than this is not waited for: the request falls
    #: back, or the client gets the 429/503 with that ``Retry-After``.
    max_retry_after: float = Field(default=5.0, ge=0)


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Currency units per million prompt tokens.
    input: float = Field(ge=0)
    #: Currency units per million completion tokens.
    output: float = Field(ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


class ModelConfig(BaseModel):
    """One model clients can ask for, and how to reach it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="the name clients ask for")
    provider: str = Field(min_length=1, description="a registered provider: openai, sim, …")
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    upstream_model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    #: Other configured models tried in order when this one fails before output.
    fallbacks: list[str] = Field(default_factory=list)
    #: Seconds a failed upstream is skipped by later requests.
    cooldown: float = Field(default=30.0, ge=0)
    #: Continue on the next fallback when this upstream fails mid-answer.
    failover: bool = False
    #: Tokens of history + new message the chat API sends this model per turn.
    context_tokens: int = Field(default=8192, ge=256)
    #: Price per million tokens, for cost budgets: {input = 2.5, output = 10.0}.
    price: Price | None = None
    #: Answers of this model are cached even when not deterministic (true), never
    #: (false), or when the request is deterministic or asks (unset).
    cache: bool | None = None
    #: Seconds its cached answers live (default: the gateway's ``cache_ttl_seconds``).
    cache_ttl_seconds: float | None = Field(default=None, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    def resolved_api_key(self) -> str | None:
        """The key itself, from `api_key` or the environment variable `api_key_env` names."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        return None

    @property
    def upstream_name(self) -> str:
        return self.upstream_model or self.name


def default_models(environ: dict[str, str] | os._Environ[str] | None = None) -> list[ModelConfig]:
    """The simulated models, plus OpenAI's when `OPENAI_API_KEY` is set."""
    env = os.environ if environ is None else environ
    models = [
        ModelConfig(name="sim", provider="sim"),
        ModelConfig(name="sim-echo", provider="sim", options={"style": "echo"}),
        ModelConfig(
            name="sim-fast", provider="sim", options={"ttft_ms": 0, "tokens_per_second": 0}
        ),
        # Thinks before it answers (``delta.reasoning_content``), as reasoning models do.
        ModelConfig(name="sim-think", provider="sim", options={"reasoning": 60}),
    ]
    if env.get("OPENAI_API_KEY"):
        base_url = env.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        models += [
            ModelConfig(
                name=name, provider="openai", base_url=base_url, api_key_env="OPENAI_API_KEY"
            )
            for name in OPENAI_DEFAULT_MODELS
        ]
    return models
