"""The browser and network boundary against a running server, tried as an attacker
would: DNS rebinding (Host), cross-site posts and WebSockets (Origin), JSON smuggled as
text/plain (Content-Type), huge bodies, slowloris (header timeout, connection cap) and
slow request bodies (body timeout, the cap again).

Requests go over raw sockets where the point is a header a normal client would never
send (or a body it would never send in that shape)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import selectors
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import websockets
from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.typing import Origin

from sluice.http.protocol import GatewayProtocol
from sluice.settings import Settings
from tests.servers import ServerProcess, base_env, free_port, running

HEADER_TIMEOUT = 3.0
BODY_TIMEOUT = 3.0


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        assert self.headers.get("content-type") == "application/json", self
        body: dict[str, Any] = json.loads(self.body)["error"]
        # The request's id, in the body exactly when in the header: every answer of the
        # app, none of the connection's own (a request head never received).
        assert set(body) - {"request_id"} == {"message", "type", "param", "code"}
        assert body.get("request_id") == self.headers.get("x-request-id")
        return body


def parse_response(data: bytes) -> Response:
    """One whole response (with a Content-Length) from bytes already received."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head: {data!r}"
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    assert len(rest) == length, f"body of {len(rest)} bytes, not {length}: {data!r}"
    return Response(int(lines[0].split()[1]), headers, rest)


def read_response(sock: socket.socket) -> Response:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    return Response(status, headers, rest[:length])


def head_bytes(
    server: ServerProcess,
    method: str,
    path: str,
    headers: dict[str, str | None] | None = None,
    *,
    version: str = "1.1",
) -> bytes:
    """A request head; Host defaults to the server's own address (None leaves it out)."""
    fields: dict[str, str | None] = {"Host": f"127.0.0.1:{server.port}", **(headers or {})}
    lines = [f"{method} {path} HTTP/{version}"]
    lines += [f"{name}: {value}" for name, value in fields.items() if value is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def request(
    server: ServerProcess,
    method: str,
    path: str,
    headers: dict[str, str | None] | None = None,
    body: bytes | None = None,
    *,
    version: str = "1.1",
) -> Response:
    fields = dict(headers or {})
    if body is not None:
        fields.setdefault("Content-Length", str(len(body)))
    fields.setdefault("Connection", "close")
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(head_bytes(server, method, path, fields, version=version) + (body or b""))
        return read_response(sock)


def post_json(
    server: ServerProcess, path: str, body: Any, headers: dict[str, str | None] | None = None
) -> Response:
    fields: dict[str, str | None] = {"Content-Type": "application/json", **(headers or {})}
    return request(server, "POST", path, fields, json.dumps(body).encode())


def conversation_titles(server: ServerProcess, query: str) -> list[str]:
    found = request(server, "GET", f"/v1/conversations?q={query}")
    assert found.status == 200, found
    return [c["title"] for c in json.loads(found.body)["data"]]


def chunked(parts: Iterable[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield b"%x\r\n%s\r\n" % (len(part), part)
    yield b"0\r\n\r\n"


def new_lines(server: ServerProcess, since: int) -> str:
    return server.output()[since:]


# -- Host: DNS rebinding --------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "localhost:{port}",
        "LOCALHOST",
        "localhost.:{port}",
        "chat.localhost:{port}",
        "[::1]:{port}",
        "10.0.0.7",
    ],
)
def test_loopback_names_and_ip_literals_are_served(gateway: ServerProcess, host: str) -> None:
    response = request(gateway, "GET", "/v1/models", {"Host": host.format(port=gateway.port)})
    assert response.status == 200, response


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1.nip.io:{port}",
        "localhost.evil.example",
        "localhost:{port}@evil.example",
        "",
    ],
)
def test_a_rebound_dns_name_is_misdirected(gateway: ServerProcess, host: str) -> None:
    host = host.format(port=gateway.port)
    for method, path, body in [
        ("GET", "/v1/models", None),
        ("GET", "/", None),
        ("POST", "/v1/chat/completions", b'{"model": "sim", "messages": []}'),
        ("POST", "/v1/session", b'{"key": "sk-x"}'),
    ]:
        fields: dict[str, str | None] = {"Host": host, "Content-Type": "application/json"}
        response = request(gateway, method, path, fields, body)
        assert response.status == 421, (path, response)
        error = response.error()
        assert error["code"] == "misdirected_request"
        assert error["type"] == "invalid_request_error"


def test_http11_without_host_is_400_and_http10_is_served(gateway: ServerProcess) -> None:
    missing = request(gateway, "GET", "/v1/models", {"Host": None})
    assert missing.status == 400
    assert missing.error()["code"] == "invalid_host"
    twice = head_bytes(gateway, "GET", "/v1/models", {"Connection": "close"})
    twice = twice.replace(b"\r\n\r\n", b"\r\nHost: evil.example\r\n\r\n")
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(twice)
        assert read_response(sock).status == 400
    old = request(gateway, "GET", "/v1/models", {"Host": None}, version="1.0")
    assert old.status == 200


# -- Origin: cross-site requests and WebSockets ---------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # another port is another origin
        {"Origin": "https://127.0.0.1:{port}"},  # and another scheme
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_cross_origin_posts_change_nothing(gateway: ServerProcess, headers: dict[str, str]) -> None:
    title = f"csrf-{uuid.uuid4().hex}"
    fields: dict[str, str | None] = {k: v.format(port=gateway.port) for k, v in headers.items()}
    response = post_json(gateway, "/v1/conversations", {"title": title}, fields)
    assert response.status == 403, response
    assert response.error()["code"] == "cross_origin"
    assert response.error()["type"] == "permission_error"
    assert conversation_titles(gateway, title) == []
    # Reading is not refused (a page cannot see the answer: no CORS headers).
    read = request(gateway, "GET", "/v1/models", fields)
    assert read.status == 200
    assert "access-control-allow-origin" not in read.headers


def test_same_origin_and_origin_less_posts_pass(gateway: ServerProcess) -> None:
    title = f"same-{uuid.uuid4().hex}"
    for headers in [
        {"Origin": f"http://127.0.0.1:{gateway.port}"},
        # Default ports are the same origin whether spelled out or not.
        {"Origin": "http://localhost", "Host": "localhost:80"},
        {"Sec-Fetch-Site": "same-origin"},
        {},  # an SDK or curl: no Origin at all
    ]:
        fields: dict[str, str | None] = dict(headers)
        response = post_json(gateway, "/v1/conversations", {"title": title}, fields)
        assert response.status == 200, (headers, response)
    assert conversation_titles(gateway, title) == [title] * 4


def test_cross_origin_delete_is_refused(gateway: ServerProcess) -> None:
    title = f"keep-{uuid.uuid4().hex}"
    created = json.loads(post_json(gateway, "/v1/conversations", {"title": title}).body)
    path = f"/v1/conversations/{created['id']}"
    refused = request(gateway, "DELETE", path, {"Origin": "https://evil.example"})
    assert refused.status == 403
    assert conversation_titles(gateway, title) == [title]


def ws_url(server: ServerProcess) -> str:
    return server.url.replace("http", "ws") + "/ws"


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:1"])
async def test_cross_origin_websocket_handshake_is_refused(
    gateway: ServerProcess, origin: str
) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(ws_url(gateway), origin=Origin(origin)):
            pass
    assert refused.value.response.status_code == 403


async def test_same_origin_websocket_is_served(gateway: ServerProcess) -> None:
    origin = f"http://127.0.0.1:{gateway.port}"
    async with websockets.connect(ws_url(gateway), origin=Origin(origin)) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"


def test_websocket_to_a_rebound_name_is_refused(gateway: ServerProcess) -> None:
    handshake = head_bytes(
        gateway,
        "GET",
        "/ws",
        {
            "Host": "evil.example",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(handshake)
        assert read_response(sock).status == 403


# -- Content-Type ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "named"),
    [
        ("text/plain", "'text/plain'"),
        ("text/plain;charset=UTF-8", "'text/plain;charset=UTF-8'"),
        ("application/x-www-form-urlencoded", "'application/x-www-form-urlencoded'"),
        ("multipart/form-data; boundary=x", "multipart/form-data"),
        ("application/jsonp", "application/jsonp"),
        (None, "none was sent"),
    ],
)
def test_json_endpoints_refuse_other_media_types(
    gateway: ServerProcess, content_type: str | None, named: str
) -> None:
    title = f"smuggled-{uuid.uuid4().hex}"
    body = json.dumps({"title": title}).encode()
    for path in ["/v1/conversations", "/v1/chat/completions", "/v1/session", "/chat"]:
        response = request(gateway, "POST", path, {"Content-Type": content_type}, body)
        assert response.status == 415, (path, response)
        error = response.error()
        assert error["code"] == "unsupported_media_type"
        assert named in error["message"]
    assert conversation_titles(gateway, title) == []


def test_json_media_type_parameters_and_case_are_accepted(gateway: ServerProcess) -> None:
    title = f"charset-{uuid.uuid4().hex}"
    for content_type in ["application/json; charset=utf-8", "Application/JSON"]:
        body = json.dumps({"title": title}).encode()
        response = request(
            gateway, "POST", "/v1/conversations", {"Content-Type": content_type}, body
        )
        assert response.status == 200, response
    assert len(conversation_titles(gateway, title)) == 2


def test_bodiless_posts_need_no_content_type(gateway: ServerProcess) -> None:
    cancel = request(gateway, "POST", "/v1/streams/nope/cancel", {"Content-Length": "0"})
    assert cancel.status == 404  # past the boundary: the stream does not exist
    bare = request(gateway, "POST", "/v1/streams/nope/cancel")
    assert bare.status == 404


# -- Body size ------------------------------------------------------------------------

LIMIT = 65536  # max_body_bytes in tests/conftest.py's gateway config


@pytest.mark.parametrize("path", ["/v1/session", "/v1/conversations", "/v1/admin/keys", "/chat"])
def test_a_declared_oversize_body_is_413_before_it_is_sent(
    gateway: ServerProcess, path: str
) -> None:
    head = head_bytes(
        gateway,
        "POST",
        path,
        {"Content-Type": "application/json", "Content-Length": str(300 * 1024 * 1024)},
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(head)  # and not one byte of the body
        response = read_response(sock)
    assert response.status == 413
    assert response.error()["code"] == "request_too_large"


def test_a_chunked_oversize_body_is_cut_off_with_413(gateway: ServerProcess) -> None:
    since = len(gateway.output())
    title = f"chunked-{uuid.uuid4().hex}"
    padding = " " * (LIMIT + 10)
    body = json.dumps({"title": title, "system_prompt": padding}).encode()
    head = head_bytes(
        gateway,
        "POST",
        "/v1/conversations",
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(head)
        for piece in chunked(body[i : i + 4096] for i in range(0, len(body), 4096)):
            sock.sendall(piece)
        response = read_response(sock)
        assert response.status == 413
        assert response.error()["code"] == "request_too_large"
        # The connection stays usable: the rest of the body was read and dropped.
        sock.sendall(head_bytes(gateway, "GET", "/health/live", {"Connection": "close"}))
        assert read_response(sock).status == 200
    assert conversation_titles(gateway, title) == []
    assert "Traceback" not in new_lines(gateway, since)
    # Under the limit, chunked is fine.
    small = json.dumps({"title": title}).encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(head + b"".join(chunked([small[:5], small[5:]])))
        assert read_response(sock).status == 200
    assert conversation_titles(gateway, title) == [title]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_300_mb_to_sign_in_costs_the_server_no_memory(gateway: ServerProcess, framing: str) -> None:
    total = 300 * 1024 * 1024
    piece = b"x" * (1024 * 1024)
    server = psutil.Process(gateway.pid)
    before = server.memory_info().rss
    framing_header = (
        {"Content-Length": str(total)}
        if framing == "content-length"
        else {"Transfer-Encoding": "chunked"}
    )
    head = head_bytes(
        gateway, "POST", "/v1/session", {"Content-Type": "application/json", **framing_header}
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=60) as sock:
        sock.sendall(head)
        for _ in range(total // len(piece)):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if framing == "chunked" else piece)
        if framing == "chunked":
            sock.sendall(b"0\r\n\r\n")
        response = read_response(sock)
        grown = server.memory_info().rss - before
    assert response.status == 413
    assert response.error()["code"] == "request_too_large"
    assert grown < 20 * 1024 * 1024, f"server RSS grew {grown / 2**20:.1f} MB"


# -- allowed_hosts, and cors_origins with "*" ------------------------------------------


@pytest.fixture(scope="module")
def listed(
    tmp_path_factory: pytest.TempPathFactory, gateway_config: Path
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("listed")
    env = base_env(
        SLUICE_ALLOWED_HOSTS='[".example.com", "gw.test"]',
        SLUICE_CORS_ORIGINS='["https://app.example", "*"]',
        SLUICE_DATA_DIR=str(tmp / "data"),
    )
    with running(["serve", "--config", str(gateway_config)], tmp, name="listed", env=env) as s:
        yield s


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("example.com", 200),
        ("api.example.com:8443", 200),
        ("a.b.example.com.", 200),
        ("gw.test", 200),
        ("GW.TEST:8000", 200),
        ("notexample.com", 421),
        ("example.com.evil.example", 421),
        ("api.gw.test", 421),
        ("evil.example", 421),
    ],
)
def test_allowed_hosts(listed: ServerProcess, host: str, status: int) -> None:
    assert request(listed, "GET", "/v1/models", {"Host": host}).status == status


def test_a_wildcard_origin_opens_http_but_not_websockets(listed: ServerProcess) -> None:
    title = f"wild-{uuid.uuid4().hex}"
    response = post_json(
        listed, "/v1/conversations", {"title": title}, {"Origin": "https://any.example"}
    )
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == "*"


async def test_websockets_need_a_listed_origin_even_with_a_wildcard(listed: ServerProcess) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(ws_url(listed), origin=Origin("https://any.example")):
            pass
    assert refused.value.response.status_code == 403
    async with websockets.connect(ws_url(listed), origin=Origin("https://app.example")) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"


# -- Slowloris: header timeout and connection cap --------------------------------------


def closed_by_peer(sockets: list[socket.socket], wait: float) -> set[int]:
    """Indexes of the sockets the server has closed, watching for up to ``wait`` s."""
    closed: set[int] = set()
    with selectors.DefaultSelector() as selector:
        for index, sock in enumerate(sockets):
            selector.register(sock, selectors.EVENT_READ, index)
        deadline = time.monotonic() + wait
        while len(closed) < len(sockets) and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(timeout=left):
                sock = sockets[key.data]
                try:
                    data = sock.recv(1024)
                except ConnectionResetError:
                    data = b""
                assert data == b"", f"the server answered a half-sent head: {data!r}"
                closed.add(key.data)
                selector.unregister(sock)
    return closed


@pytest.fixture
def open_files() -> Iterator[None]:
    """Room for 1,100+ sockets in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    assert wanted >= 2500, f"this test needs 2,500 open files; the hard limit is {hard}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def slow_config(tmp_path: Path) -> Path:
    path = tmp_path / "slow.toml"
    path.write_text(
        f"header_timeout_seconds = {HEADER_TIMEOUT}\n"
        "max_connections = 1000\n"
        "[[models]]\n"
        'name = "sim"\n'
        'provider = "sim"\n'
        "options = { ttft_ms = 5, tokens_per_second = 40, length = 120 }\n"
    )
    return path


@pytest.mark.slow
def test_slowloris_cannot_starve_the_server(
    tmp_path: Path, slow_config: Path, open_files: None
) -> None:
    # Start the server with a soft open-files limit far below 1,100 connections: it must
    # raise its own limit to the hard limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with ExitStack() as stack:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
        try:
            server = stack.enter_context(
                running(["serve", "--config", str(slow_config)], tmp_path, name="slowloris")
            )
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        limits = psutil.Process(server.pid).rlimit(psutil.RLIMIT_NOFILE)
        assert limits[0] == limits[1] == hard

        # The oldest connection is busy with a stream (~3 s): it must never be shed.
        stream = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        body = json.dumps(
            {"model": "sim", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        ).encode()
        stream.sendall(
            head_bytes(
                server,
                "POST",
                "/v1/chat/completions",
                {"Content-Type": "application/json", "Content-Length": str(len(body))},
            )
            + body
        )
        assert stream.recv(12).startswith(b"HTTP/1.1 200")
        # An idle keep-alive connection: first in line to be shed.
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        idle.sendall(head_bytes(server, "GET", "/health/live"))
        assert read_response(idle).status == 200

        # 1,100 connections that each send half a request head, then stall.
        half = head_bytes(server, "GET", "/v1/models").split(b"\r\n")[0] + b"\r\nHost: 127"
        stalled = []
        for _ in range(1100):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(half)
            stalled.append(sock)

        # A normal request on a new connection is still answered.
        answered = request(server, "GET", "/v1/models")
        assert answered.status == 200

        # The cap (1,000) was kept by closing the longest-idle connections: the idle
        # keep-alive and the oldest half-open ones, never the stream.
        assert closed_by_peer([idle], wait=2.0) == {0}
        shed = closed_by_peer(stalled, wait=1.0)
        assert len(shed) >= 100
        assert set(range(50)) <= shed

        # The stream finished in full.
        received = b""
        while chunk := stream.recv(65536):
            received += chunk
            if b"data: [DONE]" in received:
                break
        assert b"data: [DONE]" in received
        stream.close()

        # Every half-open connection is closed by the header timeout.
        remaining = [sock for index, sock in enumerate(stalled) if index not in shed]
        timed_out = closed_by_peer(remaining, wait=HEADER_TIMEOUT + 5)
        assert len(timed_out) == len(remaining)
        for sock in [*stalled, idle]:
            sock.close()
        assert "Too many open files" not in server.output()
        assert "Traceback" not in server.output()


@pytest.mark.slow
def test_workers_keep_the_boundary_and_the_header_timeout(
    tmp_path: Path, slow_config: Path
) -> None:
    port = free_port()
    env = base_env(
        SLUICE_REDIS_URL="redis://127.0.0.1:6379/0",
        SLUICE_REDIS_PREFIX=f"test-boundary-{uuid.uuid4().hex[:8]}",
    )
    args = ["serve", "--config", str(slow_config), "--workers", "2"]
    with running(args, tmp_path, name="workers", env=env, port=port) as server:
        assert request(server, "GET", "/v1/models").status == 200
        assert request(server, "GET", "/v1/models", {"Host": "evil.example"}).status == 421
        stalled = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
        for sock in stalled:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 12")
        assert len(closed_by_peer(stalled, wait=HEADER_TIMEOUT + 5)) == len(stalled)
        for sock in stalled:
            sock.close()


# -- Slow request bodies: the body timeout, and the cap sheds slow bodies too -----------


@pytest.fixture
def slow_body_config(tmp_path: Path) -> Path:
    path = tmp_path / "slow-body.toml"
    path.write_text(
        f"header_timeout_seconds = {HEADER_TIMEOUT}\n"
        f"body_timeout_seconds = {BODY_TIMEOUT}\n"
        "max_connections = 1000\n"
        "[[models]]\n"
        'name = "sim"\n'
        'provider = "sim"\n'
    )
    return path


def watch_slow_bodies(
    sockets: list[socket.socket], opened_at: list[float], stream: socket.socket, wait: float
) -> tuple[dict[int, tuple[float, bytes]], bytes]:
    """Until every socket is closed by the server (at most ``wait`` s): one more byte of
    body to each open socket every second (while it is not yet due to time out), what
    each received and when it was closed; the stream is read meanwhile.

    Returns {index: (seconds from its head to its close, bytes received)}, and the
    stream's bytes so far."""
    closed: dict[int, tuple[float, bytes]] = {}
    received = [b""] * len(sockets)
    streamed = b""
    next_drip = time.monotonic() + 1.0
    with selectors.DefaultSelector() as selector:
        for index, sock in enumerate(sockets):
            selector.register(sock, selectors.EVENT_READ, index)
        selector.register(stream, selectors.EVENT_READ, -1)
        deadline = time.monotonic() + wait
        while len(closed) < len(sockets) and (now := time.monotonic()) < deadline:
            for key, _ in selector.select(timeout=min(deadline, next_drip) - now):
                if key.data == -1:
                    chunk = stream.recv(65536)
                    assert chunk, f"the stream was cut: {streamed[-500:]!r}"
                    streamed += chunk
                    if b"data: [DONE]" in streamed:
                        selector.unregister(stream)
                    continue
                sock = sockets[key.data]
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    received[key.data] += chunk
                    continue
                closed[key.data] = (time.monotonic() - opened_at[key.data], received[key.data])
                selector.unregister(sock)
            now = time.monotonic()
            if now >= next_drip:
                next_drip = now + 1.0
                for index, sock in enumerate(sockets):
                    # Never into a socket about to be answered: a byte arriving after
                    # the server closed would reset the connection and lose the 408.
                    if index not in closed and now < opened_at[index] + BODY_TIMEOUT - 0.5:
                        with contextlib.suppress(OSError):  # closed: the selector sees it
                            sock.send(b"x")
    return closed, streamed


@pytest.mark.slow
def test_slow_request_bodies_cannot_starve_the_server(
    tmp_path: Path, slow_body_config: Path, open_files: None
) -> None:
    with ExitStack() as stack:
        server = stack.enter_context(
            running(["serve", "--config", str(slow_body_config)], tmp_path, name="slow-body")
        )
        # A stream of ~10 s, far past the body timeout: its request was received in full,
        # so neither the body timeout nor the cap may touch it.
        stream = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), 30))
        body = json.dumps(
            {
                "model": "sim",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
                "sim": {"tokens_per_second": 20, "length": 200},
            }
        ).encode()
        stream.sendall(
            head_bytes(
                server,
                "POST",
                "/v1/chat/completions",
                {"Content-Type": "application/json", "Content-Length": str(len(body))},
            )
            + body
        )
        streamed = stream.recv(65536)
        assert streamed.startswith(b"HTTP/1.1 200"), streamed

        # 1,100 sign-ins (no authentication needed) whose bodies never complete.
        slow_head = head_bytes(
            server,
            "POST",
            "/v1/session",
            {"Content-Type": "application/json", "Content-Length": "1000"},
        )
        slow: list[socket.socket] = []
        opened_at: list[float] = []
        for _ in range(1100):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), 10))
            slow.append(sock)
            sock.sendall(slow_head + b'{"key":"')
            opened_at.append(time.monotonic())
        opening = opened_at[-1] - opened_at[0]
        assert opening < BODY_TIMEOUT - 1, f"opening 1,100 sockets took {opening:.1f} s"

        # A normal request on a new connection is answered at once: the cap closed the
        # oldest slow bodies to make room (no body has timed out yet).
        asked = time.monotonic()
        assert request(server, "GET", "/health/live").status == 200
        assert time.monotonic() - asked < 1.0
        assert time.monotonic() < opened_at[0] + BODY_TIMEOUT

        # Every slow body is closed: the oldest shed by the cap, the rest answered 408 at
        # the body timeout, though each kept sending a byte a second.
        closed, more = watch_slow_bodies(slow, opened_at, stream, wait=BODY_TIMEOUT + 5)
        streamed += more
        assert len(closed) == len(slow), f"{len(slow) - len(closed)} slow bodies still open"
        timed_out = shed = 0
        for index, (after, data) in sorted(closed.items()):
            assert after < BODY_TIMEOUT + 1.5, (index, after)
            if data:
                response = parse_response(data)
                assert response.status == 408, response
                assert response.headers["connection"] == "close"
                error = response.error()
                assert error == {
                    "message": error["message"],
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "request_timeout",
                }
                assert after >= BODY_TIMEOUT - 0.1, (index, after)
                timed_out += 1
            else:
                assert after < BODY_TIMEOUT, f"socket {index} closed without a 408 at {after}"
                shed += 1
        assert shed >= 100
        assert timed_out >= 900
        assert all(not closed[index][1] for index in range(50)), "the oldest go first"
        slowest_close = max(opened_at[i] + after for i, (after, _) in closed.items())

        # The stream outlived all of it, and finished in full.
        while b"data: [DONE]" not in streamed:
            chunk = stream.recv(65536)
            assert chunk, f"the stream was cut: {streamed[-500:]!r}"
            streamed += chunk
        assert time.monotonic() > slowest_close
        assert b'"error"' not in streamed
        assert streamed.count(b"data: {") >= 100

        assert request(server, "GET", "/health/live").status == 200
        assert "Traceback" not in server.output()


# The protocol alone, on a fake socket: the deadline only ever covers a request body.


class FakeTransport(asyncio.Transport):
    """Just enough of a socket: what the server wrote, and whether it closed it."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.protocol: GatewayProtocol | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.written += data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.protocol is not None:
                asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class BodyApp:
    """Reads the whole body; ``/hold`` then waits for ``release``; the answer is the body,
    in ``chunks`` pieces ``pause`` s apart (chunked)."""

    def __init__(self, settings: Settings, *, chunks: int = 1, pause: float = 0.0) -> None:
        self.settings = settings
        self.chunks = chunks
        self.pause = pause
        self.release = asyncio.Event()
        self.received: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            self.received.append(message["type"])
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/hold":
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(self.chunks):
            await asyncio.sleep(self.pause)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


class Harness:
    def __init__(self, app: BodyApp) -> None:
        self.config = Config(
            app, http=GatewayProtocol, ws="none", lifespan="off", proxy_headers=False
        )
        self.config.log_config = None
        self.config.load()
        self.state = ServerState()

    def connect(self) -> tuple[GatewayProtocol, FakeTransport]:
        protocol = GatewayProtocol(self.config, self.state, {}, asyncio.get_running_loop())
        transport = FakeTransport()
        transport.protocol = protocol
        protocol.connection_made(transport)
        return protocol, transport

    async def close(self) -> None:
        for connection in list(self.state.connections):
            connection.transport.close()
        await asyncio.sleep(0.01)
        await asyncio.wait_for(asyncio.gather(*self.state.tasks), 5)


def post_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def test_a_body_sent_promptly_is_unaffected_by_the_body_timeout() -> None:
    app = BodyApp(Settings(body_timeout_seconds=0.3))
    harness = Harness(app)
    protocol, transport = harness.connect()
    protocol.data_received(post_head("/echo", 12))
    assert protocol.body_timer is not None  # the body is due
    await asyncio.sleep(0.1)
    protocol.data_received(b'{"key":')
    await asyncio.sleep(0.1)
    protocol.data_received(b' "x"}')
    assert protocol.body_timer is None  # and it came
    await asyncio.sleep(0.5)  # past the timeout
    assert not transport.closed
    assert transport.written.startswith(b"HTTP/1.1 200")
    assert transport.written.endswith(b'c\r\n{"key": "x"}\r\n0\r\n\r\n')
    # A bodiless request on the same connection never arms the timer.
    transport.written.clear()
    protocol.data_received(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert protocol.body_timer is None
    await asyncio.sleep(0.05)
    assert transport.written.startswith(b"HTTP/1.1 200")
    await harness.close()


async def test_a_streaming_response_outlives_the_body_timeout() -> None:
    app = BodyApp(Settings(body_timeout_seconds=0.2), chunks=8, pause=0.1)
    harness = Harness(app)
    protocol, transport = harness.connect()
    protocol.data_received(post_head("/stream", 2) + b"{}")
    await asyncio.sleep(1.2)  # the answer takes 0.8 s, four body timeouts
    assert not transport.closed
    assert transport.written.count(b"2\r\n{}\r\n") == 8
    assert transport.written.endswith(b"0\r\n\r\n")
    assert app.received == ["http.request"]
    await harness.close()


async def test_a_stalled_body_is_answered_408_and_closed() -> None:
    app = BodyApp(Settings(body_timeout_seconds=0.3))
    harness = Harness(app)
    protocol, transport = harness.connect()
    protocol.data_received(post_head("/echo", 100) + b'{"key":"')
    for _ in range(5):  # a byte every 0.1 s does not move the deadline
        await asyncio.sleep(0.1)
        if not transport.closed:
            protocol.data_received(b"x")
    await asyncio.sleep(0.05)
    assert transport.closed
    response = parse_response(bytes(transport.written))
    assert response.status == 408
    assert response.error() == {
        "message": "The request body was not received in time.",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_timeout",
    }
    assert app.received[-1] == "http.disconnect"
    assert not harness.state.connections
    await harness.close()


async def test_the_cap_sheds_idle_then_slow_bodies_never_a_received_request() -> None:
    app = BodyApp(Settings(max_connections=16))
    harness = Harness(app)
    busy = [harness.connect() for _ in range(13)]
    for protocol, _ in busy:
        protocol.data_received(post_head("/hold", 2) + b"{}")  # received in full
    idle_protocol, idle = harness.connect()
    idle_protocol.data_received(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await asyncio.sleep(0.01)
    assert idle.written.startswith(b"HTTP/1.1 200")  # now an idle keep-alive
    older_protocol, older = harness.connect()
    older_protocol.data_received(post_head("/hold", 100) + b"{")
    await asyncio.sleep(0.01)
    newer_protocol, newer = harness.connect()
    newer_protocol.data_received(post_head("/hold", 100) + b"{")
    assert len(harness.state.connections) == 16

    # Past the cap: the idle one goes first, then the oldest slow body, then the other.
    closings = []
    for _ in range(4):
        extra_protocol, extra = harness.connect()
        closings.append((idle.closed, older.closed, newer.closed, extra.closed))
        if not extra.closed:
            extra_protocol.data_received(post_head("/hold", 2) + b"{}")
            busy.append((extra_protocol, extra))
        await asyncio.sleep(0)
    assert closings == [
        (True, False, False, False),
        (True, True, False, False),
        (True, True, True, False),
        # Only requests received in full are left: the newcomer is refused instead.
        (True, True, True, True),
    ]
    assert not older.written and not newer.written
    assert not any(transport.closed for _, transport in busy)
    app.release.set()
    await asyncio.sleep(0.05)
    assert all(transport.written.endswith(b"0\r\n\r\n") for _, transport in busy)
    await harness.close()
