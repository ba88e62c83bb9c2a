"""A rule that asks an OpenAI-compatible ``/v1/moderations`` endpoint (input only).

The upstream's verdict is taken as it is: ``flagged`` blocks (or flags) with the first
flagged category. An upstream that cannot be reached fails closed for ``block`` rules
(the request is refused as unavailable, nothing is sent to the model) and open for
``flag`` rules (logged).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import aiohttp

from sluice.errors import Unavailable
from sluice.guard.config import GuardrailConfig
from sluice.guard.rules import Match
from sluice.providers.http_client import HttpClient

logger = logging.getLogger("sluice.guard")


class ModerationAPIRule:
    def __init__(self, config: GuardrailConfig, http: HttpClient) -> None:
        self.name = config.name
        self.action: str = config.action
        self.category = config.category
        #: Its categories are the upstream's; only a fixed one is known up front.
        self.categories = frozenset({config.category} if config.category else ())
        self.directions: frozenset[str] = frozenset(config.applies_to)
        self._models = frozenset(config.models)
        self._keys = frozenset(config.keys)
        assert config.base_url is not None
        self._url = config.base_url.rstrip("/") + "/moderations"
        self._model = config.model
        self._http = http
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        key = config.api_key.get_secret_value() if config.api_key else None
        if key is None and config.api_key_env:
            key = os.environ.get(config.api_key_env)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}

    def applies(self, model: str, key: tuple[str, str] | None) -> bool:
        return (not self._models or model in self._models) and self.reaches(key)

    def reaches(self, key: tuple[str, str] | None) -> bool:
        return not self._keys or (key is not None and bool(self._keys.intersection(key)))

    async def check(self, texts: list[str]) -> list[Match | None]:
        """One verdict per text: a whole-text match when flagged, else None."""
        body: dict[str, Any] = {"input": texts}
        if self._model:
            body["model"] = self._model
        try:
            async with self._http.session.post(
                self._url, json=body, headers=self._headers, timeout=self._timeout
            ) as response:
                if response.status != 200:
                    raise aiohttp.ClientError(f"status {response.status}")
                data = await response.json()
            results = data["results"]
        except (aiohttp.ClientError, TimeoutError, KeyError, TypeError, ValueError) as exc:
            if self.action == "block":
                raise Unavailable(
                    f"The moderation service of guardrail {self.name!r} is unavailable; "
                    "retry later.",
                    code="moderation_unavailable",
                ) from None
            logger.warning("guardrail %s: moderation service failed: %s", self.name, exc)
            return [None] * len(texts)
        verdicts: list[Match | None] = []
        for text, result in zip(texts, results, strict=False):
            if not isinstance(result, dict) or not result.get("flagged"):
                verdicts.append(None)
                continue
            categories = result.get("categories") or {}
            flagged = next((name for name, on in categories.items() if on), "flagged")
            category = self.category or str(flagged)
            verdicts.append(Match(0, len(text), self.name, self.action, category, ""))
        verdicts += [None] * (len(texts) - len(verdicts))
        return verdicts
