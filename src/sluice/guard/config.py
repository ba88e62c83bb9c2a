"""``[[guardrails]]`` in the config file: what each rule is and where it applies.

::

    [[guardrails]]
    name = "no-secrets"            # names the rule in errors, logs and metrics
    kind = "pii"                   # keywords | regex | pii | moderation_api
    detectors = ["email", "card"]  # pii: which detectors (default: all)
    applies_to = ["input", "output"]
    action = "mask"                # block | mask | flag
    models = []                    # model names it applies to (empty: every model)
    keys = []                      # API key names or ids (empty: every caller)
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from sluice.guard.pii import NAMES

Kind = Literal["keywords", "regex", "pii", "moderation_api"]
Direction = Literal["input", "output"]
Action = Literal["block", "mask", "flag"]

BOTH: tuple[Direction, ...] = ("input", "output")


class GuardrailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: Kind
    applies_to: list[Direction] = Field(default_factory=lambda: [*BOTH], min_length=1)
    action: Action = "block"
    #: The category a block or flag reports (default: the rule's name; a pii rule
    #: reports ``pii/<detector>``).
    category: str | None = Field(default=None, max_length=64)
    #: Replaces what a keywords or regex rule masks (default ``[<CATEGORY>]``).
    replacement: str | None = Field(default=None, max_length=64)
    models: list[str] = Field(default_factory=list)
    keys: list[str] = Field(default_factory=list)
    words: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)
    detectors: list[str] = Field(default_factory=lambda: list(NAMES))
    #: moderation_api: an OpenAI-compatible ``/v1/moderations`` (its base URL, ``…/v1``).
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    model: str | None = None
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} does not compile: {exc}") from None
        return patterns

    @field_validator("detectors")
    @classmethod
    def _known(cls, detectors: list[str]) -> list[str]:
        unknown = sorted(set(detectors) - set(NAMES))
        if unknown:
            raise ValueError(f"unknown detectors {unknown}; known: {', '.join(NAMES)}")
        return detectors

    @model_validator(mode="after")
    def _complete(self) -> GuardrailConfig:
        if self.kind == "keywords" and not any(w.strip() for w in self.words):
            raise ValueError(f"guardrail {self.name!r}: a keywords rule needs 'words'")
        if self.kind == "regex" and not self.patterns:
            raise ValueError(f"guardrail {self.name!r}: a regex rule needs 'patterns'")
        if self.kind == "moderation_api":
            if not self.base_url or not self.base_url.startswith(("http://", "https://")):
                raise ValueError(
                    f"guardrail {self.name!r}: a moderation_api rule needs an http(s) 'base_url'"
                )
            if "output" in self.applies_to:
                raise ValueError(
                    f"guardrail {self.name!r}: a moderation_api rule checks input only "
                    "(on output it would hold the stream for a network call per chunk)"
                )
            if self.action == "mask":
                raise ValueError(
                    f"guardrail {self.name!r}: a moderation_api rule can block or flag, not mask"
                )
        return self
