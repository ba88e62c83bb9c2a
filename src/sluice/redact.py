"""What must never be written down: secrets anywhere, chat text unless asked for.

One place decides it for all text that leaves the process besides the answer itself:
log records from every logger (ours, uvicorn's, the websockets library's, aiohttp's,
SQLAlchemy's) and upstream error messages passed on to clients.

- Secrets are caught two ways. The ones this process knows (the master key, upstream
  keys and the header values it sends upstream, passwords in the database and Redis
  URLs) are replaced wherever they appear. The rest are caught by shape:
  ``Authorization``/``Cookie``/``Sec-WebSocket-Key``/... header values, ``Bearer``
  tokens, ``sk-…`` keys, JWTs, URL passwords, ``api_key=``-style query parameters.
- Chat text has no shape, so it is stopped at the sources that carry it: WebSocket
  frame payloads (the websockets library logs every frame at debug), SQL parameters and
  rows, pydantic's ``input_value``. ``log_content = true`` lets those through; secrets
  stay redacted either way.

Logging is process-wide, so the secrets known here are too: the filter built from the
logging configuration (in each worker process) teaches them to the module, and
``scrub`` uses them for upstream error bodies as well.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.settings import Settings

#: What a secret becomes.
MARK = "[redacted]"

#: Known secrets shorter than this are only redacted by shape: replacing a 4-letter
#: password everywhere would garble every log line that happens to contain the word.
MIN_SECRET = 8

#: Header names whose values are credentials, in logs and upstream bodies alike.
SECRET_HEADERS = (
    "proxy-authorization",
    "authorization",
    "x-api-key",
    "api-key",
    "set-cookie",
    "cookie",
    "sec-websocket-key",
    "x-csrf-token",
)


def _header_pattern(names: str) -> re.Pattern[str]:
    # `Name: value` to the end of the line, a quoted value in a dict or JSON dump
    # (`'name': 'value'`), or an ASGI/websockets pair (`(b'name', b'value')`).
    return re.compile(
        rf"""(?<![\w-])(?P<name>{names})
        (?P<sep>['"]\s*[:,]\s*|\s*[:=]\s*)
        (?P<value>b?'[^'\r\n]*'|b?"[^"\r\n]*"|[^\r\n]*)""",
        re.IGNORECASE | re.VERBOSE,
    )


_SECRET_HEADER = _header_pattern("|".join(re.escape(name) for name in SECRET_HEADERS))
# An upstream echoing our request back may also show proxy and tracing headers and
# the custom headers a model sends (`options.headers`): none of the client's business.
_INTERNAL_HEADER = _header_pattern(
    r"x-[\w-]+|forwarded|via|openai-organization|openai-project|"
    + "|".join(re.escape(name) for name in SECRET_HEADERS)
)
# Basic credentials are left to the header rule: "Basic <8 letters>" is also English.
_BEARER = re.compile(r"\b(?P<scheme>Bearer)\s+[\w.~+/-]{8,}=*", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"\b(?P<head>[a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s@/]+@", re.IGNORECASE)
_QUERY_SECRET = re.compile(
    r"(?P<head>(?:(?<![\w-])(?:api[_-]?key|access[_-]?token|refresh[_-]?token|password|"
    r"passwd|client[_-]?secret|secret|token)|[?&;](?:key|sig|signature|session|code))=)"
    r"[^&\s'\",;#]+",
    re.IGNORECASE,
)
_API_KEY = re.compile(r"(?<![\w-])sk-[A-Za-z0-9][\w-]{7,}")
_JWT = re.compile(r"\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*")
_SESSION_COOKIE = re.compile(r"(?P<head>sluice_session=)[^;\s'\",]+")

# Carriers of chat text inside exception messages.
_PYDANTIC_INPUT = re.compile(r"input_value=.*?(?=, input_type=)")
_SQL_PARAMETERS = re.compile(r"\[parameters: [^\r\n]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class Redactor:
    """Secrets known to this process, and the shapes that give the others away."""

    def __init__(self) -> None:
        # Replaced as a whole (never mutated) so a scrub in another thread never sees
        # a half-updated collection. Longest first, so a secret containing another is
        # redacted whole.
        self._known: tuple[str, ...] = ()

    def remember(self, secrets: Iterable[str | None]) -> None:
        known = set(self._known) | {s for s in secrets if s and len(s) >= MIN_SECRET}
        self._known = tuple(sorted(known, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for secret in self._known:
            if secret in text:
                text = text.replace(secret, MARK)
        text = _SECRET_HEADER.sub(_header_value, text)
        return self._shapes(text)

    def scrub_upstream(self, text: str, limit: int) -> str:
        """An upstream's error message, fit to pass on to a client: secrets and our
        request's internal headers out, one line, at most ``limit`` characters."""
        for secret in self._known:
            if secret in text:
                text = text.replace(secret, MARK)
        # Headers first, while a header line still ends at its newline (the value runs
        # to the end of the line), then onto one line.
        text = self._shapes(_INTERNAL_HEADER.sub(_header_value, text))
        text = _CONTROL.sub(" ", text).strip()
        return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"

    @staticmethod
    def _shapes(text: str) -> str:
        text = _BEARER.sub(rf"\g<scheme> {MARK}", text)
        text = _URL_PASSWORD.sub(rf"\g<head>:{MARK}@", text)
        text = _QUERY_SECRET.sub(rf"\g<head>{MARK}", text)
        text = _API_KEY.sub(MARK, text)
        text = _JWT.sub(MARK, text)
        return _SESSION_COOKIE.sub(rf"\g<head>{MARK}", text)


def _header_value(match: re.Match[str]) -> str:
    value = match["value"]
    if not value.strip():
        return match[0]
    prefix = "b" if value.startswith("b") and value[1:2] in ("'", '"') else ""
    quote = value[len(prefix)] if value[len(prefix) :][:1] in ("'", '"') else ""
    return f"{match['name']}{match['sep']}{prefix}{quote}{MARK}{quote}"


#: The process's redactor: the logging filter and the upstream error mapping share it.
REDACTOR = Redactor()


def scrub(text: str) -> str:
    return REDACTOR.scrub(text)


def hide_content(text: str) -> str:
    """Chat text out of an exception's message (validation inputs, SQL parameters)."""
    text = _PYDANTIC_INPUT.sub("input_value=[hidden]", text)
    return _SQL_PARAMETERS.sub("[parameters hidden]", text)


def secrets_of(settings: Settings) -> list[str]:
    """Every secret the settings hold, as the strings that could show up in text."""
    found: list[str | None] = []
    if settings.master_key is not None:
        found.append(settings.master_key.get_secret_value())
    for url in (settings.database_url, settings.redis_url):
        if url is not None:
            found.append(_url_password(url.get_secret_value()))
    for model in settings.models:
        found.append(model.resolved_api_key())
        headers = model.options.get("headers") or {}
        if isinstance(headers, dict):
            found += [str(value) for value in headers.values()]
    return [secret for secret in found if secret]


def _url_password(url: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


# -- logging --------------------------------------------------------------------------

#: Loggers whose records below WARNING carry chat text (SQL rows and parameters).
_CONTENT_LOGGERS = ("sqlalchemy.engine", "aiosqlite")
#: WebSocket frame kinds whose payload is the conversation.
_DATA_FRAMES = frozenset({"TEXT", "BINARY", "CONT"})
#: A payload shown with log_content on is cut here (a whole answer is one frame per token).
_MAX_PAYLOAD = 4096
_FORMATTER = logging.Formatter()


class RedactingFilter(logging.Filter):
    """On every handler: secrets out of every record at every level; chat text out
    unless ``log_content``. Rewrites the record into its final message, so a formatter
    never sees the raw arguments."""

    def __init__(self, secrets: Iterable[str] = (), log_content: bool = False) -> None:
        super().__init__()
        REDACTOR.remember(secrets)
        self.log_content = log_content

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            not self.log_content
            and record.levelno < logging.WARNING
            and record.name.startswith(_CONTENT_LOGGERS)
        ):
            return False
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            # Its formatter unpacks the arguments: scrub them in place (the query string).
            record.args = tuple(scrub(a) if isinstance(a, str) else a for a in record.args)
            return True
        try:
            if isinstance(record.args, tuple):
                record.args = tuple(self._argument(a) for a in record.args)
            message = record.getMessage()
        except Exception:
            # A broken format string: logging would print the raw arguments to stderr.
            message = f"{record.msg} [arguments dropped: they could not be formatted]"
        record.msg = self._clean(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self._clean(record.stack_info)
        return True

    def _clean(self, text: str) -> str:
        text = scrub(text)
        return text if self.log_content else hide_content(text)

    def _argument(self, value: Any) -> Any:
        # websockets logs each frame object at debug ("< TEXT '{...}' [102 bytes]").
        kind = getattr(getattr(value, "opcode", None), "name", None)
        data = getattr(value, "data", None)
        if kind not in _DATA_FRAMES or not isinstance(data, bytes | bytearray | memoryview):
            return value
        size = f"[{len(data)} bytes]"
        if not self.log_content:
            return f"{kind} {size}"
        payload = bytes(data[:_MAX_PAYLOAD]).decode("utf-8", "replace")
        return f"{kind} {payload!r} {size}"


def logging_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's ``log_config``: its own loggers as usual, everyone else's through one
    named handler, every handler behind the redacting filter and the request id filter
    (a line written while handling a request ends `` request_id=…``). Built once in the
    parent and handed to each worker, which installs it (and so learns the secrets)
    itself."""
    level = settings.log_level.upper()
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    json_formatter = {"()": "sluice.telemetry.logs.JsonFormatter"}
    stream: dict[str, Any] = {
        "class": "logging.StreamHandler",
        "filters": ["redact", "request_id"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact": {
                "()": "sluice.redact.RedactingFilter",
                "secrets": secrets_of(settings),
                "log_content": settings.log_content,
            },
            "request_id": {"()": "sluice.request_ids.RequestIdFilter"},
        },
        "formatters": {
            "default": json_formatter,
            "access": json_formatter,
            "named": json_formatter,
        }
        if as_json
        else {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s%(request_tag)s",
                "use_colors": None,
            },
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": (
                    '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
                    "%(request_tag)s"
                ),
            },
            "named": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(name)s: %(message)s%(request_tag)s",
                "use_colors": None,
            },
        },
        "handlers": {
            "default": {**stream, "formatter": "default", "stream": "ext://sys.stderr"},
            "access": {**stream, "formatter": "access", "stream": "ext://sys.stdout"},
            "named": {**stream, "formatter": "named", "stream": "ext://sys.stderr"},
        },
        "root": {"handlers": ["named"], "level": "WARNING"},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "sluice": {"level": level},
            "websockets": {"level": level},
            "aiohttp": {"level": level},
            # SQL echo logs parameters and rows (chat text); aiosqlite's debug lines
            # carry the same. Warnings and errors only.
            "sqlalchemy": {"level": "WARNING"},
            "aiosqlite": {"level": "WARNING"},
        },
    }
