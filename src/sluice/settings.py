"""Settings: defaults < TOML config file < ``SLUICE_*`` environment < command-line flags.

The environment and the config file are read once, at the edge (``Settings.load`` in
the CLI or the server factory); everything below takes a ``Settings`` or its parts
through constructors. Secrets are ``SecretStr`` so a ``repr`` never shows them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from sluice.errors import ConfigError
from sluice.guard.config import GuardrailConfig

# The model table's types live in sluice.model_config; re-exported for existing imports.
from sluice.model_config import OPENAI_DEFAULT_MODELS as OPENAI_DEFAULT_MODELS
from sluice.model_config import ModelConfig as ModelConfig
from sluice.model_config import Price as Price
from sluice.model_config import RetryPolicy as RetryPolicy
from sluice.model_config import Timeouts as Timeouts
from sluice.model_config import default_models as default_models
from sluice.wire.storable import DEFAULT_MAX_JSON_BYTES

DisconnectPolicy = Literal["cancel", "detach"]

#: Shortest master key accepted.
MIN_MASTER_KEY = 16


class AlertRules(BaseModel):
    """``[alerts]``: thresholds over a sliding window (see sluice.telemetry.alerts);
    a threshold left unset is off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_seconds: float = Field(default=60.0, gt=0)
    evaluate_seconds: float = Field(default=5.0, gt=0)
    p95_response_seconds: float | None = Field(default=None, gt=0)
    p95_ttft_seconds: float | None = Field(default=10.0, gt=0)
    #: Failed answers / answers in the window, 0..1.
    error_rate: float | None = Field(default=0.25, ge=0, le=1)
    #: Answers the window needs before its error rate counts.
    min_requests: int = Field(default=10, ge=1)
    memory_percent: float | None = Field(default=90.0, gt=0, le=100)
    #: 100 = one core.
    cpu_percent: float | None = Field(default=None, gt=0)
    loop_lag_seconds: float | None = Field(default=0.5, gt=0)
    #: Where state changes are POSTed as JSON.
    webhook_url: str | None = None

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class _TableSource(PydanticBaseSettingsSource):
    """Values already read from the config file, below the environment in priority."""

    def __init__(self, settings_cls: type[BaseSettings], table: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._table = table

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._table.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._table)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SLUICE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    models: list[ModelConfig] = Field(default_factory=list)
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: Seconds between SSE keep-alive comments while a stream is idle.
    keepalive_seconds: float = Field(default=15.0, gt=0)
    #: Seconds a finished stream stays replayable at /v1/streams/{id}.
    stream_retention_seconds: float = Field(default=300.0, ge=0)
    #: On SIGTERM, seconds active streams get to finish before they are ended.
    drain_seconds: float = Field(default=30.0, ge=0)
    #: A client that has not taken a chunk for this long is cut off.
    send_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Where the default SQLite store and other state live.
    data_dir: Path | None = None
    database_url: SecretStr | None = None
    #: Guards the admin API; with it (or any API key) set, every endpoint needs a key.
    master_key: SecretStr | None = None
    #: Origins (scheme://host[:port]) allowed to call from a browser; same-origin always.
    cors_origins: list[str] = Field(default_factory=list)
    #: Browser sessions last this long, renewed on use.
    session_seconds: float = Field(default=3600.0, gt=0)
    #: Serve on a non-loopback address with no authentication (explicit opt-in).
    insecure_no_auth: bool = False
    #: The model the chat API and the web page use when none is named.
    default_model: str | None = None
    redis_url: SecretStr | None = None
    #: Prefix of every Redis key and channel, so deployments sharing a Redis never meet.
    redis_prefix: str = Field(default="sluice", min_length=1, max_length=64, pattern=r"^[\w.-]+$")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: Write chat text (questions, answers) to the log; off by default at every level.
    log_content: bool = False

    # -- the boundary: what hostile clients and pages may not do --------------------
    #: Host names requests may be addressed to besides loopback names and the bound
    #: address (DNS rebinding defense); "*" allows any.
    allowed_hosts: list[str] = Field(default_factory=list)
    #: Seconds a client gets to send its request line and headers (slowloris).
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Seconds a client gets, once its headers are in, to send the whole request body.
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Open client connections per process; past it the longest-idle ones are closed.
    max_connections: int = Field(default=1000, ge=16)
    #: Largest stored JSON object (a conversation's options), serialised, in bytes.
    max_json_bytes: int = Field(default=DEFAULT_MAX_JSON_BYTES, ge=256)
    #: Choices per request (`n`).
    max_choices: int = Field(default=8, ge=1, le=128)
    #: Largest answer the simulated model may be asked for (its `length`), in tokens.
    max_sim_length: int = Field(default=20000, ge=1)
    #: Concurrent streams per key when the key sets none.
    default_key_concurrency: int = Field(default=32, ge=1)
    #: Generations running at once in this process; past it new ones get 503.
    max_running_generations: int = Field(default=2000, ge=1)

    # -- the response cache and request coalescing -----------------------------------
    #: Where cached answers live: off, memory (this process), database, redis (shared).
    cache: Literal["off", "memory", "database", "redis"] = "off"
    #: Whose requests share cached answers: each key its own ("key"), or everyone.
    cache_scope: Literal["key", "global"] = "key"
    #: Seconds a cached answer lives, unless its model or the request says otherwise.
    cache_ttl_seconds: float = Field(default=3600.0, gt=0)
    #: The longest a request's ``Cache-Control: max-age`` may keep an answer.
    cache_max_ttl_seconds: float = Field(default=86400.0, gt=0)
    #: The memory cache's bound, in bytes of stored answers.
    cache_memory_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    #: Identical eligible requests in flight share one upstream generation.
    coalesce: bool = True

    #: Days a stored Responses API response (``store``) is kept for ``GET`` and
    #: ``previous_response_id``.
    responses_days: float = Field(default=30.0, gt=0)

    # -- guardrails (docs/GUARDRAILS.md) -----------------------------------------------
    #: ``[[guardrails]]``: rules checking the input before any upstream call and the
    #: answer as it streams.
    guardrails: list[GuardrailConfig] = Field(default_factory=list)
    #: Characters of each answer held back for output rules to see across chunks: a
    #: match up to this long is masked before any of it leaves.
    guardrail_window: int = Field(default=64, ge=8, le=4096)

    # -- observability -------------------------------------------------------------
    #: Metrics, the per-request log line and the request log. Off only to measure what
    #: they cost (``sluice bench --features off``).
    telemetry: bool = True
    #: A bearer token that may read ``GET /metrics`` (and nothing else); the master key
    #: may too.
    metrics_token: SecretStr | None = None
    #: Days the request log (one row per request, no chat text) keeps; 0 keeps none.
    request_log_days: float = Field(default=7.0, ge=0)
    alerts: AlertRules = Field(default_factory=AlertRules)
    #: Log lines as JSON objects, as plain text, or JSON unless stderr is a terminal.
    log_format: Literal["auto", "json", "text"] = "auto"

    @model_validator(mode="after")
    def _guardrails_unique(self) -> Settings:
        names = [g.name for g in self.guardrails]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"guardrail names must be unique; repeated: {duplicates}")
        window = self.guardrail_window
        for rule in self.guardrails:
            long = [w for w in rule.words if len(w) > window]
            if "output" in rule.applies_to and long:
                # On the stream, a match longer than the window could leave unchecked.
                raise ValueError(
                    f"guardrail {rule.name!r}: {long[0]!r} is longer than guardrail_window "
                    f"({window}); raise the window or apply the rule to input only"
                )
        return self

    @model_validator(mode="after")
    def _cache_backend_reachable(self) -> Settings:
        if self.cache == "redis" and self.redis_url is None:
            raise ValueError('cache = "redis" needs redis_url (SLUICE_REDIS_URL)')
        return self

    @field_validator("master_key")
    @classmethod
    def _strong_master_key(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty variable must not read as "no authentication", nor a short one as a
        # secret.
        if value is None:
            return value
        secret = value.get_secret_value()
        if secret != secret.strip():
            # A Bearer token is trimmed, a sign-in body is not: padding would make the
            # two disagree (and a key of spaces is no secret).
            raise ValueError("the master key must not start or end with white space")
        if len(secret) < MIN_MASTER_KEY:
            raise ValueError(
                f"the master key must be at least {MIN_MASTER_KEY} characters (it is "
                f"{len(secret)}); unset it to run without one"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # No .env file, no secrets directory: the environment and, in ``load``, the
        # config file (below it).
        return (init_settings, env_settings)

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Build settings from the config file, the environment and explicit overrides
        (command-line flags; ``None`` values are ignored). Raises ConfigError naming the
        file, the key and the problem."""
        table = read_config_file(config_file) if config_file is not None else {}
        flags = {key: value for key, value in overrides.items() if value is not None}

        class Loaded(cls):  # type: ignore[valid-type,misc]
            # The file's table, below the environment, for this load only: a class of
            # its own per load, so nothing is shared between loads or kept after one.
            @classmethod
            def settings_customise_sources(
                cls,
                settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,
                dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                return (init_settings, env_settings, _TableSource(settings_cls, table))

        try:
            settings = Loaded(**flags)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, config_file, table)) from None
        result = cls.model_validate(settings.model_dump())
        if not result.models:
            result = result.model_copy(update={"models": default_models()})
        _check_model_names(result.models, config_file)
        return result


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path}: is a directory") from None
    except PermissionError:
        raise ConfigError(f"config file {path}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None


def _describe(exc: ValidationError, path: Path | None, table: dict[str, Any]) -> str:
    problems = []
    for error in exc.errors():
        loc = error["loc"]
        key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
        key = key.lstrip(".") or "(root)"
        top = loc[0] if loc else ""
        if path is not None and top in table:
            where = f"config file {path}: key {key}"
        else:
            where = f"setting {key} (environment variable SLUICE_{str(top).upper()})"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def _check_model_names(models: list[ModelConfig], path: Path | None) -> None:
    where = f"config file {path}: " if path else ""
    seen: set[str] = set()
    for position, model in enumerate(models):
        if model.name in seen:
            raise ConfigError(
                f"{where}key models[{position}].name: duplicate model name {model.name!r}"
            )
        seen.add(model.name)
    for position, model in enumerate(models):
        for fallback in model.fallbacks:
            if fallback not in seen or fallback == model.name:
                raise ConfigError(
                    f"{where}key models[{position}].fallbacks: {fallback!r} is not another "
                    "configured model"
                )
