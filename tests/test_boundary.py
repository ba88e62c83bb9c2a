"""The browser and network boundary against a running server, tried as an attacker
would: DNS rebinding (Host), cross-site posts and WebSockets (Origin), JSON smuggled as
text/plain (Content-Type), huge bodies, and slowloris (header timeout, connection cap).

Requests go over raw sockets where the point is a header a normal client would never
send (or a body it would never send in that shape)."""

from __future__ import annotations

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
from websockets.typing import Origin

from tests.servers import ServerProcess, base_env, free_port, running

HEADER_TIMEOUT = 3.0


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        assert self.headers.get("content-type") == "application/json", self
        body: dict[str, Any] = json.loads(self.body)["error"]
        assert set(body) == {"message", "type", "param", "code"}
        return body


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
