"""Request ids and diagnostics (issue 13, items 2 and 6), against a running gateway:
``x-request-id`` on every kind of response, a client's own id kept only when
well-formed, the id on the upstream call, in the server's log and in error bodies; and
for each class of upstream failure a hint naming what to check, in the error body, the
stream, ``/health`` and the terminal."""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from sluice.errors import (
    ModelNotFound,
    Upstream,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnavailable,
    recommendation,
)
from sluice.events import StreamError
from sluice.providers.upstream_errors import error_for_status, upstream_of
from sluice.request_ids import RequestIdFilter, bind, request_id_for
from sluice.settings import ModelConfig
from sluice.wire.errors import error_body, error_from_stream, stream_error_from
from tests.faults import new_key
from tests.servers import ServerProcess, free_port, running
from tests.term_session import invoke

GENERATED = re.compile(r"req_[0-9a-f]{24}")

CONFIG = """
keepalive_seconds = 1.0
max_body_bytes = 65536

[[models]]
name = "sim"
provider = "sim"
options = {{ ttft_ms = 0, tokens_per_second = 0, length = 20 }}

[[models]]
name = "recorder"
provider = "openai"
base_url = "{recorder}/v1"

[[models]]
name = "relay"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"
api_key_env = "TEST_REQUEST_IDS_UPSTREAM_KEY"
retry = {{ attempts = 1 }}

[[models]]
name = "relay-slow"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"
timeouts = {{ first_token = 0.2 }}
retry = {{ attempts = 1 }}

[[models]]
name = "dead"
provider = "openai"
base_url = "http://127.0.0.1:{dead_port}/v1"
retry = {{ attempts = 1 }}
"""


class Recorder:
    """An OpenAI-compatible upstream that answers "hi" and keeps the headers of every
    chat request it gets, by the question asked."""

    ANSWER = (
        b'data: {"id":"r","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},'
        b'"finish_reason":null}]}\n\n'
        b'data: {"id":"r","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, str]] = {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the gateway's health check: GET /v1/models
                self._answer(b'{"object":"list","data":[]}', "application/json")

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                question = body["messages"][-1]["content"]
                recorder.seen[question] = {k.lower(): v for k, v in self.headers.items()}
                self._answer(Recorder.ANSWER, "text/event-stream")

            def _answer(self, body: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


@pytest.fixture(scope="module")
def dead_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def config(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: ServerProcess,
    recorder: Recorder,
    dead_port: int,
) -> Path:
    path = tmp_path_factory.mktemp("request-ids") / "gateway.toml"
    path.write_text(
        CONFIG.format(upstream=upstream.url, recorder=recorder.url, dead_port=dead_port)
    )
    return path


@pytest.fixture(scope="module")
def gateway(config: Path) -> Iterator[ServerProcess]:
    with running(["serve", "--config", str(config)], config.parent, name="ids") as server:
        yield server


class Answer:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name]

    @property
    def request_id(self) -> str:
        (value,) = self.all("x-request-id")
        return value

    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = json.loads(self.body)["error"]
        return error


def call(
    gateway: ServerProcess,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=20)
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        if data is not None and not any(k.lower() == "content-type" for k, _ in pairs):
            pairs.append(("Content-Type", "application/json"))
        connection.putrequest(method, path, skip_host=any(k.lower() == "host" for k, _ in pairs))
        for name, value in pairs:
            connection.putheader(name, value)
        if data is not None:
            connection.putheader("Content-Length", str(len(data)))
        connection.endheaders(data)
        response = connection.getresponse()
        return Answer(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


def raw_head(gateway: ServerProcess, request: bytes) -> tuple[int, list[tuple[str, str]]]:
    """Send bytes as they are; the status and headers of what comes back."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in head[1:])
    ]
    return status, headers


def chat(model: str, question: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": question}], **extra}


# -- every response carries an id ------------------------------------------------------

CROSS_SITE = {"Origin": "https://evil.example"}
RESPONSES = [
    ("POST", "/v1/chat/completions", chat("sim", "hi", stream=True), {}, 200),
    ("POST", "/v1/chat/completions", chat("sim", "hi"), {}, 200),
    ("POST", "/chat", {"message": "hi", "model": "sim"}, {}, 200),
    ("GET", "/v1/conversations", None, {}, 200),
    ("GET", "/v1/models", None, {}, 200),
    ("GET", "/v1/models/sim", None, {}, 200),
    ("GET", "/health", None, {}, 200),
    ("GET", "/health/live", None, {}, 200),
    ("GET", "/health/ready", None, {}, 200),
    ("GET", "/", None, {}, 200),
    ("GET", "/static/app.css", None, {}, 200),
    ("GET", "/static/nope.css", None, {}, 404),
    ("GET", "/v1/nope", None, {}, 404),
    ("GET", "/v1/models/nope", None, {}, 404),
    ("DELETE", "/v1/models", None, {}, 405),
    ("GET", "/v1/chat/completions", None, {}, 405),
    ("POST", "/v1/chat/completions", b"{nope", {}, 400),
    ("POST", "/v1/chat/completions", b"hi", {"Content-Type": "text/plain"}, 415),
    ("POST", "/v1/chat/completions", b"x" * 70_000, {}, 413),
    ("GET", "/v1/models", None, {"Host": "evil.example"}, 421),
    ("POST", "/v1/chat/completions", chat("sim", "hi"), CROSS_SITE, 403),
    ("POST", "/v1/chat/completions", chat("dead", "hi"), {}, 502),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    RESPONSES,
    ids=[f"{m} {p} {s}" for m, p, _, _, s in RESPONSES],
)
def test_every_response_carries_a_new_id(
    gateway: ServerProcess,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
    status: int,
) -> None:
    answer = call(gateway, method, path, body, headers)
    assert answer.status == status, answer.body[:300]
    assert GENERATED.fullmatch(answer.request_id)
    if status >= 400 and answer.all("content-type") == ["application/json"]:
        # Every JSON error body names the request, whichever layer answered.
        assert answer.error()["request_id"] == answer.request_id


def test_ids_are_new_for_each_request(gateway: ServerProcess) -> None:
    ids = {call(gateway, "GET", "/health/live").request_id for _ in range(5)}
    assert len(ids) == 5


def test_websocket_handshake_carries_the_id(gateway: ServerProcess) -> None:
    status, headers = raw_head(
        gateway,
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nX-Request-Id: ws-trace.7\r\n\r\n",
    )
    assert status == 101
    assert ("x-request-id", "ws-trace.7") in headers


# -- a client's own id -----------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    ["trace-1", "a", "0af7651916cd43dd8448eb211c80319c", "svc:order.42_retry-3", "x" * 128],
)
def test_a_well_formed_client_id_is_kept(gateway: ServerProcess, sent: str) -> None:
    answer = call(gateway, "GET", "/v1/models", headers={"X-Request-Id": sent})
    assert answer.status == 200 and answer.request_id == sent


@pytest.mark.parametrize(
    "sent",
    [
        "x" * 129,  # too long
        "two words",
        "tab\there",
        "caf\u00e9",  # not ASCII (sent as latin-1)
        "semi;colon",
        "quote'd",
        "sk-proj-abcdefghijklmnopqrstuvwx",  # a key in the wrong header: never logged
    ],
)
def test_a_malformed_client_id_is_replaced_not_echoed(gateway: ServerProcess, sent: str) -> None:
    answer = call(gateway, "GET", "/v1/models", headers={"X-Request-Id": sent})
    assert answer.status == 200
    assert GENERATED.fullmatch(answer.request_id)


def test_two_client_ids_are_replaced(gateway: ServerProcess) -> None:
    answer = call(
        gateway, "GET", "/v1/models", headers=[("X-Request-Id", "one"), ("X-Request-Id", "two")]
    )
    assert GENERATED.fullmatch(answer.request_id)


def test_a_carriage_return_cannot_inject_a_header(gateway: ServerProcess) -> None:
    # A bare CR inside the value: either the HTTP parser refuses the request, or the id
    # is replaced; never is the part after the CR sent back as a header.
    status, headers = raw_head(
        gateway,
        b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"X-Request-Id: abc\rX-Injected: yes\r\n\r\n",
    )
    assert not any(name == "x-injected" for name, _ in headers)
    assert all(GENERATED.fullmatch(value) for name, value in headers if name == "x-request-id")
    assert status in (200, 400)


def test_ids_with_line_breaks_or_outside_the_alphabet_are_never_kept() -> None:
    for sent in [b"abc\r\nx-injected: 1", b"abc\n", b"", b"a b", b"a\x00", b"\xc3\xa9", b"a/b"]:
        assert GENERATED.fullmatch(request_id_for(sent)), sent
    assert request_id_for(b"Az09-_.:") == "Az09-_.:"
    assert GENERATED.fullmatch(request_id_for(None))


# -- the id reaches the upstream, the log and the error body ---------------------------


@pytest.mark.parametrize("stream", [True, False])
def test_the_upstream_call_carries_the_client_id(
    gateway: ServerProcess, recorder: Recorder, stream: bool
) -> None:
    question = f"who am I {uuid.uuid4()}"
    sent = f"trace-{new_key()}"
    answer = call(
        gateway,
        "POST",
        "/v1/chat/completions",
        chat("recorder", question, stream=stream),
        {"X-Request-Id": sent},
    )
    assert answer.status == 200 and answer.request_id == sent
    # The upstream call is made from the generation's own task: it inherited the id.
    assert recorder.seen[question]["x-request-id"] == sent


def test_the_upstream_call_carries_a_new_id_and_the_chat_api_too(
    gateway: ServerProcess, recorder: Recorder
) -> None:
    question = f"who am I {uuid.uuid4()}"
    answer = call(gateway, "POST", "/chat", {"message": question, "model": "recorder"})
    assert answer.status == 200 and b"hi" in answer.body
    assert recorder.seen[question]["x-request-id"] == answer.request_id
    assert GENERATED.fullmatch(answer.request_id)


def test_the_log_line_about_a_request_carries_its_id(gateway: ServerProcess) -> None:
    sent = f"log-trace-{new_key()}"
    answer = call(
        gateway, "POST", "/v1/chat/completions", chat("dead", "hi"), {"X-Request-Id": sent}
    )
    assert answer.status == 502
    # Written before the response was sent (one record, flushed by its handler); the
    # server's stderr is not a terminal, so its lines are JSON objects.
    lines = [json.loads(line) for line in gateway.output().splitlines() if sent in line]
    warnings = [line for line in lines if line["logger"] != "sluice.requests"]
    assert len(warnings) == 1, lines
    (line,) = warnings
    assert line["level"] == "warning" and line["request_id"] == sent
    assert "cannot reach the upstream" in line["message"]
    assert "check base_url" in line["message"]
    # And the one line about the request itself, once its response was over.
    for _ in range(100):
        lines = [json.loads(line) for line in gateway.output().splitlines() if sent in line]
        requests = [line for line in lines if line["logger"] == "sluice.requests"]
        if requests:
            break
        time.sleep(0.02)
    (request,) = requests
    assert (request["request_id"], request["status"], request["error"]) == (
        sent,
        502,
        "upstream_unavailable",
    )


# -- upstream failures: request id and hint in the body --------------------------------


@pytest.mark.parametrize(
    ("model", "sim", "status", "code", "names"),
    [
        ("relay", {"fail_status": 401}, 502, "upstream_auth", ["api_key_env", "api_key"]),
        ("relay", {"fail_status": 403}, 502, "upstream_auth", ["api_key_env"]),
        ("dead", None, 502, "upstream_unavailable", ["base_url"]),
        ("relay-slow", {"ttft_ms": 3000}, 504, "first_token_timeout", ["timeouts.first_token"]),
        ("relay", {"fail_status": 429}, 429, "upstream_rate_limited", ["concurrency", "fallback"]),
        ("relay", {"fail_status": 503}, 503, "upstream_unavailable", ["(503)", "fallback"]),
        ("relay", {"fail_status": 500}, 502, "upstream_unavailable", ["(500)", "retry"]),
        ("relay", {"fail_status": 400}, 400, "upstream_rejected", ["upstream_model"]),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
def test_upstream_failures_carry_the_request_id_and_a_hint(
    gateway: ServerProcess,
    model: str,
    sim: dict[str, Any] | None,
    status: int,
    code: str,
    names: list[str],
    stream: bool,
) -> None:
    body = chat(model, "hi", stream=stream, **({"sim": sim} if sim else {}))
    answer = call(gateway, "POST", "/v1/chat/completions", body)
    assert answer.status == status, answer.body
    error = answer.error()
    assert error["code"] == code
    assert error["request_id"] == answer.request_id
    for name in names:
        assert name in error["hint"], error["hint"]
    # The SDKs' four fields are still there, unchanged.
    assert {"message", "type", "param", "code"} <= error.keys()


def test_client_errors_carry_the_request_id_but_no_hint(gateway: ServerProcess) -> None:
    answer = call(gateway, "POST", "/v1/chat/completions", chat("nope", "hi"))
    assert answer.status == 404
    error = answer.error()
    assert error["code"] == "model_not_found" and "hint" not in error
    assert error["request_id"] == answer.request_id


def test_an_in_band_failure_carries_the_hint(gateway: ServerProcess) -> None:
    # Output started, then the upstream dropped: the error is a record in the stream.
    body = chat("relay", "hi", stream=True, sim={"drop_after": 3, "ttft_ms": 0})
    answer = call(gateway, "POST", "/v1/chat/completions", body)
    assert answer.status == 200
    records = [
        json.loads(line.removeprefix("data: "))
        for line in answer.body.decode().splitlines()
        if line.startswith("data: {")
    ]
    error = records[-1]["error"]
    assert error["code"] == "upstream_error"
    assert "check the upstream's logs" in error["hint"]


def test_health_names_what_to_check_for_a_failing_upstream(
    gateway: ServerProcess, dead_port: int
) -> None:
    answer = call(gateway, "GET", "/health")
    body = json.loads(answer.body)
    assert body["upstreams"]["relay"] == "ok" and body["upstreams"]["dead"] != "ok"
    # Here the model is known, so the hint names its setting and value.
    assert body["upstream_hints"] == {
        "dead": f"check base_url of model 'dead' (http://127.0.0.1:{dead_port}/v1) "
        "and that the upstream server is up"
    }


# -- the terminal ----------------------------------------------------------------------


def test_the_terminal_shows_the_hint_remote_and_local(
    gateway: ServerProcess, config: Path, tmp_path: Path
) -> None:
    remote = invoke("ask", "hi", "-m", "dead", "--url", gateway.url, data_dir=tmp_path)
    local = invoke("ask", "hi", "-m", "dead", "-C", str(config), data_dir=tmp_path)
    for result in (remote, local):
        assert result.exit_code == 1
        assert re.fullmatch(
            r"sluice: error: cannot reach the upstream: .+; check base_url of model 'dead' "
            r"\(http://127\.0\.0\.1:\d+/v1\) and that the upstream server is up; try again, "
            r"or pick another model with -m\n",
            result.stderr,
        ), result.stderr
    auth = invoke(
        "ask", "hi", "-m", "relay", "-o", "sim=" + json.dumps({"fail_status": 401}),
        "--url", gateway.url, data_dir=tmp_path,
    )  # fmt: skip
    assert auth.exit_code == 1
    # Named down to the variable the key comes from (never the key).
    assert (
        "upstream refused the gateway's credentials (401); check the environment variable "
        "TEST_REQUEST_IDS_UPSTREAM_KEY (api_key_env of model 'relay')"
    ) in auth.stderr


# -- the pieces, without a server ------------------------------------------------------


def test_the_log_filter_tags_records_made_in_a_request_context() -> None:
    import contextvars

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(message)s%(request_tag)s"))
    logger = logging.getLogger("sluice.test_request_ids")
    logger.addHandler(handler)
    logger.propagate = False
    try:

        def in_request() -> None:
            bind("req-in-context")
            logger.warning("inside")

        contextvars.copy_context().run(in_request)
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (handler.format(r) for r in records)
    assert inside == "inside request_id=req-in-context"
    assert outside == "outside"
    assert [getattr(r, "request_id", "unset") for r in records] == ["req-in-context", None]


KEYED = Upstream("gpt", "https://api.example/v1", "OPENAI_API_KEY", True, "gpt-4o", 7.5)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            UpstreamTimeout("t", code="first_token_timeout"),
            "raise timeouts.first_token of model 'gpt' (now 7.5 s), or check the upstream's load",
        ),
        (
            error_for_status(401),
            "check the environment variable OPENAI_API_KEY (api_key_env of model 'gpt'): "
            "the upstream refused it",
        ),
        (
            UpstreamUnavailable("cannot reach the upstream: refused"),
            "check base_url of model 'gpt' (https://api.example/v1) and that the upstream "
            "server is up",
        ),
        (
            error_for_status(502),
            "the upstream's own trouble (502): add retries (retry.attempts) or fallbacks to "
            "model 'gpt'",
        ),
        (
            error_for_status(429),
            "lower the concurrency sent to this upstream (the keys' rate limits), or add "
            "fallbacks to model 'gpt'",
        ),
        (
            error_for_status(404),
            "check the model name the upstream is sent (gpt-4o), upstream_model of model "
            "'gpt', and the request's parameters: the upstream refused them",
        ),
        (
            UpstreamProtocolError("bad"),
            "check that base_url of model 'gpt' (https://api.example/v1) is an "
            "OpenAI-compatible API",
        ),
        (ModelNotFound("nope"), None),
    ],
)
def test_one_recommendation_per_class_naming_the_settings(
    error: Exception, expected: str | None
) -> None:
    assert isinstance(error, ModelNotFound | UpstreamError)
    assert recommendation(error, KEYED) == expected


def test_the_hint_survives_the_stream_record_and_no_key_is_ever_named() -> None:
    error = error_for_status(503)
    record = stream_error_from(error)
    assert isinstance(record, StreamError) and record.hint == error.hint
    assert "(503)" in (record.hint or "")
    assert error_from_stream(record).hint == error.hint
    secret_model = ModelConfig(
        name="m",
        provider="openai",
        base_url="https://user:pa55word@api.example:8443/v1?key=sk-secret",
        api_key=SecretStr("sk-inline-secret-key"),
    )
    facts = upstream_of(secret_model)
    assert facts.base_url == "https://api.example:8443/v1"
    assert facts.key_variable is None and facts.has_key
    hint = recommendation(error_for_status(401), facts)
    assert hint == "check api_key of model 'm': the upstream refused it"
    # Bodies without a hint or a request id are OpenAI's four fields exactly.
    assert json.loads(error_body(ModelNotFound("x"))) == {
        "error": {"message": "x", "type": "invalid_request_error", "param": None,
                  "code": "model_not_found"}
    }  # fmt: skip
