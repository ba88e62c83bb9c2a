"""Secrets and chat text stay out of logs (every logger, debug level included) and out of
upstream error messages passed on to clients."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import websockets
from aiohttp import web
from pydantic import BaseModel, ValidationError
from websockets.frames import Frame, Opcode

from sluice.providers.upstream_errors import MAX_DETAIL, error_for_status
from sluice.redact import MARK, REDACTOR, RedactingFilter, Redactor, secrets_of
from sluice.settings import Settings
from tests.databases import postgres_database
from tests.servers import ServerProcess, base_env, free_port, running

MASTER = "sk-master-" + secrets.token_hex(12)
UPSTREAM_KEY = "sk-upstream-" + secrets.token_hex(12)
#: A header value the gateway sends upstream: a secret with no telltale shape.
INTERNAL = "internal-" + secrets.token_hex(8)
DB_PASSWORD = "pw-" + secrets.token_hex(8)
#: Chat text, distinctive enough that any fragment of it in a log is a leak.
SENTENCE = "Quixotic walrus archives marmalade"
WORDS = ("Quixotic", "walrus", "marmalade")


# -- the redactor, by table -------------------------------------------------------------

SHAPES = [
    ("Authorization: Bearer abcdefgh12345678", "abcdefgh12345678"),
    ("< authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    ("headers={'x-api-key': 'k-0123456789'}", "k-0123456789"),
    ('{"Api-Key": "k-0123456789", "model": "m"}', "k-0123456789"),
    ("[(b'cookie', b'sluice_session=tok123456789')]", "tok123456789"),
    ("Set-Cookie: sluice_session=tok123456789; HttpOnly", "tok123456789"),
    ("< Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ"),
    ("X-CSRF-Token: csrf0123456789", "csrf0123456789"),
    ("upstream said: invalid key sk-proj-Abc123def456ghi789", "Abc123def456ghi789"),
    ("token Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig", "eyJzdWIiOiIx"),
    ("connecting to redis://:hunter2hunter2@10.0.0.1:6379/0", "hunter2hunter2"),
    ("postgresql://app:s3cr3t-pw@db.internal/sluice failed", "s3cr3t-pw"),
    ("GET /v1/models?api_key=qwertyuiop1234&x=1", "qwertyuiop1234"),
    ("GET /ws?token=qwertyuiop1234", "qwertyuiop1234"),
    ("url=https://up.example/v1?key=qwertyuiop1234", "qwertyuiop1234"),
    ("sluice_session=tok123456789 was rejected", "tok123456789"),
]


@pytest.mark.parametrize(("text", "secret"), SHAPES)
def test_secret_shapes_are_redacted(text: str, secret: str) -> None:
    scrubbed = Redactor().scrub(text)
    assert secret not in scrubbed
    assert MARK in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "The Authorization header must be 'Bearer <API key>'.",
        "marked 3 answer(s) interrupted by a restart as incomplete",
        "http://127.0.0.1:8000/v1/chat/completions",
        "task-abcdefghijkl finished; basic functionality works",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor().scrub(text) == text


def test_known_secrets_are_redacted_wherever_they_appear() -> None:
    redactor = Redactor()
    redactor.remember(["plain-secret-value", "short", None])
    assert redactor.scrub("x plain-secret-value y") == f"x {MARK} y"
    assert redactor.scrub("a short word") == "a short word", "too short to replace blindly"


def test_secrets_of_settings() -> None:
    settings = Settings.load(
        master_key=MASTER,
        database_url=f"postgresql://u:{DB_PASSWORD}@db/x",
        redis_url="redis://:redis-password-1@r:6379",
        models=[
            {
                "name": "up",
                "provider": "openai",
                "base_url": "http://up/v1",
                "api_key": UPSTREAM_KEY,
                "options": {"headers": {"X-Internal-Token": INTERNAL}},
            }
        ],
    )
    assert set(secrets_of(settings)) == {
        MASTER,
        DB_PASSWORD,
        "redis-password-1",
        UPSTREAM_KEY,
        INTERNAL,
    }


# -- the logging filter -----------------------------------------------------------------


def _record(
    name: str, msg: str, *args: object, exc: BaseException | None = None
) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(name, logging.DEBUG, __file__, 1, msg, args, exc_info)


def _render(record: logging.LogRecord, log_content: bool = False) -> str | None:
    if not RedactingFilter(log_content=log_content).filter(record):
        return None
    return logging.Formatter().format(record)


def test_websocket_frames_show_their_size_not_their_text() -> None:
    frame = Frame(Opcode.TEXT, json.dumps({"message": SENTENCE}).encode())
    hidden = _render(_record("uvicorn.error", "< %s", frame))
    assert hidden is not None and "walrus" not in hidden and "TEXT [" in hidden
    shown = _render(_record("uvicorn.error", "< %s", frame), log_content=True)
    assert shown is not None and SENTENCE in shown
    close = _render(_record("uvicorn.error", "> %s", Frame(Opcode.CLOSE, b"\x03\xe8")))
    assert close is not None and "CLOSE 1000" in close


class _Turn(BaseModel):
    n: int


def test_chat_text_in_exceptions_is_hidden() -> None:
    try:
        _Turn.model_validate({"n": SENTENCE})
    except ValidationError as exc:
        hidden = _render(_record("sluice.engine", "failed", exc=exc))
        shown = _render(_record("sluice.engine", "failed", exc=exc), log_content=True)
    assert hidden is not None and "walrus" not in hidden and "input_value=[hidden]" in hidden
    assert shown is not None and SENTENCE in shown
    sql = f"INSERT INTO messages ...\n[parameters: ('{SENTENCE}', 'abc')]\n(Background on this"
    rendered = _render(_record("sluice.chat", sql))
    assert rendered is not None and "walrus" not in rendered
    assert _render(_record("sqlalchemy.engine.Engine", "[generated] (%r,)", SENTENCE)) is None
    assert _render(_record("aiosqlite", "executing %s", SENTENCE)) is None


def test_secrets_are_redacted_in_arguments_tracebacks_and_access_lines() -> None:
    REDACTOR.remember([INTERNAL])
    rendered = _render(
        _record("websockets.server", "< %s: %s", "cookie", "sluice_session=abc123456789")
    )
    assert rendered == f"< cookie: {MARK}"
    try:
        raise RuntimeError(f"upstream said {INTERNAL}")
    except RuntimeError as exc:
        rendered = _render(_record("sluice.engine", "failed", exc=exc))
    assert rendered is not None and INTERNAL not in rendered and "RuntimeError" in rendered
    access = _record(
        "uvicorn.access",
        '%s - "%s %s HTTP/%s" %d',
        "1.2.3.4",
        "GET",
        "/x?token=abcdef123456",
        "1.1",
        200,
    )
    assert RedactingFilter().filter(access)
    assert isinstance(access.args, tuple) and access.args[2] == f"/x?token={MARK}"
    assert access.args[4] == 200, "the access formatter unpacks typed arguments"
    broken = _render(_record("sluice", "%d apples", INTERNAL))
    assert broken is not None and INTERNAL not in broken


# -- upstream error bodies --------------------------------------------------------------


def test_upstream_detail_is_scrubbed_and_capped() -> None:
    REDACTOR.remember([INTERNAL, UPSTREAM_KEY])
    detail = (
        f"bad request: Authorization: Bearer {UPSTREAM_KEY}\nX-Forwarded-For: 10.1.2.3\n"
        f"(trace {INTERNAL}) see https://up.example/v1?api_key={UPSTREAM_KEY} " + "x" * 5000
    )
    error = error_for_status(400, detail)
    assert UPSTREAM_KEY not in error.message and INTERNAL not in error.message
    assert "10.1.2.3" not in error.message and "\n" not in error.message
    assert error.message.startswith("upstream returned 400: bad request")
    assert len(error.message) <= len("upstream returned 400: ") + MAX_DETAIL
    assert error.status == 400


@pytest.fixture
async def echoing_upstream() -> AsyncIterator[str]:
    """An upstream whose errors echo the request's credentials and headers back."""

    async def chat(request: web.Request) -> web.Response:
        echoed = (
            f"Authorization: {request.headers.get('Authorization')}, "
            f"X-Internal-Token: {request.headers.get('X-Internal-Token')}, "
            f"retry at https://up.example/v1?api_key={UPSTREAM_KEY} (trace {INTERNAL}) "
        )
        if request.match_info["kind"] == "text":
            return web.Response(status=500, text="internal error; " + echoed + "z" * 3000)
        message = "invalid request; " + echoed + "padding " * 600
        return web.json_response({"error": {"message": message, "type": "x"}}, status=400)

    app = web.Application()
    app.router.add_post("/{kind}/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_upstream_errors_reach_the_client_without_upstream_secrets(
    tmp_path: Path, echoing_upstream: str
) -> None:
    config = tmp_path / "echo.toml"
    models = ""
    for kind in ("json", "text"):
        models += f"""
[[models]]
name = "echo-{kind}"
provider = "openai"
base_url = "{echoing_upstream}/{kind}/v1"
api_key = "{UPSTREAM_KEY}"
options = {{ headers = {{ X-Internal-Token = "{INTERNAL}" }} }}
retry = {{ attempts = 1 }}
"""
    config.write_text(models)
    with running(["serve", "--config", str(config)], tmp_path, name="echo-gw") as gateway:
        async with aiohttp.ClientSession() as session:
            for kind, status in (("json", 400), ("text", 502)):
                body = {"model": f"echo-{kind}", "messages": [{"role": "user", "content": "x"}]}
                async with session.post(gateway.url + "/v1/chat/completions", json=body) as r:
                    assert r.status == status, await r.text()
                    raw = await r.text()
                message = json.loads(raw)["error"]["message"]
                assert message.startswith(f"upstream returned {'400' if kind == 'json' else 500}")
                for secret in (UPSTREAM_KEY, INTERNAL, UPSTREAM_KEY[12:]):
                    assert secret not in raw, (kind, raw)
                assert len(message) < MAX_DETAIL + 50
        log = gateway.output()
    assert UPSTREAM_KEY not in log and INTERNAL not in log


# -- the whole gateway at debug level ---------------------------------------------------


@dataclass
class Exercised:
    """The secrets one run of the scenario put on the wire."""

    values: dict[str, str] = field(default_factory=dict)


def _gateway_config(tmp: Path, upstream: ServerProcess) -> Path:
    path = tmp / "secrets.toml"
    path.write_text(
        f"""
[[models]]
name = "relay-echo"
provider = "openai"
base_url = "{upstream.url}/v1"
upstream_model = "sim-echo"
api_key = "{UPSTREAM_KEY}"
options = {{ headers = {{ X-Internal-Token = "{INTERNAL}" }} }}
"""
    )
    return path


async def _exercise(server: ServerProcess) -> Exercised:
    """Everything a client can send that carries a secret or chat text."""
    seen = Exercised({"master key": MASTER, "upstream key": UPSTREAM_KEY, "header": INTERNAL})
    master = {"Authorization": f"Bearer {MASTER}"}
    chat_body = {"model": "relay-echo", "messages": [{"role": "user", "content": SENTENCE}]}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.post(
            server.url + "/v1/admin/keys", json={"name": "t"}, headers=master
        ) as r:
            key = (await r.json())["key"]
        seen.values["api key"] = key
        bearer = {"Authorization": f"Bearer {key}"}
        for stream in (False, True):
            async with session.post(
                server.url + "/v1/chat/completions",
                json={**chat_body, "stream": stream},
                headers=bearer,
            ) as r:
                assert r.status == 200
                assert "walrus" in await r.text()
        wrong = "sk-" + secrets.token_urlsafe(32)
        seen.values["wrong key"] = wrong
        async with session.get(
            server.url + "/v1/models", headers={"Authorization": f"Bearer {wrong}"}
        ) as r:
            assert r.status == 401
        async with session.post(server.url + "/v1/session", json={"key": key}) as r:
            assert r.status == 200
            seen.values["csrf token"] = (await r.json())["csrf_token"]
            cookie = r.cookies["sluice_session"].value
        seen.values["session cookie"] = cookie
        async with session.get(server.url + "/v1/models") as r:
            assert r.status == 200
    async with websockets.connect(
        server.url.replace("http", "ws") + "/ws",
        additional_headers={"Cookie": f"sluice_session={cookie}", "Origin": server.url},
    ) as ws:
        assert ws.request is not None
        seen.values["websocket key"] = ws.request.headers["Sec-WebSocket-Key"]
        await ws.send(json.dumps({"type": "chat", "message": SENTENCE, "model": "relay-echo"}))
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] in ("done", "error"):
                break
        assert frame["type"] == "done" and frame["content"] == SENTENCE
    return seen


@pytest.mark.parametrize(
    ("log_content", "log_format"),
    [(False, "text"), (True, "text"), (False, "json")],
    ids=["content-off", "content-on", "content-off-json"],
)
async def test_debug_log_holds_no_secrets(
    tmp_path: Path, upstream: ServerProcess, log_content: bool, log_format: str
) -> None:
    async with postgres_database() as url:
        # Trust authentication ignores the password, so it can be a secret to look for.
        database = url.replace("postgres@", f"postgres:{DB_PASSWORD}@")
        env = base_env(
            SLUICE_MASTER_KEY=MASTER,
            SLUICE_LOG_LEVEL="debug",
            SLUICE_LOG_CONTENT=str(log_content).lower(),
            SLUICE_LOG_FORMAT=log_format,
            SLUICE_DATABASE_URL=database,
        )
        config = _gateway_config(tmp_path, upstream)
        with running(["serve", "--config", str(config)], tmp_path, name="debug", env=env) as server:
            seen = await _exercise(server)
            log = server.output()
    debug = '"level":"debug"' if log_format == "json" else "DEBUG:"
    assert debug in log and "< TEXT" in log, "the debug logs ran"
    # A JSON line escapes what it quotes: look for both spellings of every value.
    leaks = {
        name: value
        for name, value in seen.values.items()
        if value in log or json.dumps(value)[1:-1] in log
    }
    assert not leaks, f"in the log: {sorted(leaks)}"
    assert DB_PASSWORD not in log
    if log_content:
        assert SENTENCE in log
    else:
        assert not [word for word in WORDS if word in log], log
