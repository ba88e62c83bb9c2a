from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ServerProcess, free_port, running

# A gateway config used by most HTTP tests: the in-process simulator, models relayed to
# a real `sluice sim` upstream over HTTP, and upstreams that are down.
GATEWAY_CONFIG = """
keepalive_seconds = 1.0
send_timeout_seconds = 2.0
max_body_bytes = 65536

[[models]]
name = "sim"
provider = "sim"
options = {{ ttft_ms = 5, tokens_per_second = 2000, length = 60 }}

[[models]]
name = "relay"
provider = "openai"
base_url = "{upstream}/v1"
api_key = "sk-upstream-secret"
upstream_model = "sim"

[[models]]
name = "relay-echo"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim-echo"

[[models]]
name = "relay-slow"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"
timeouts = {{ first_token = 0.2 }}
retry = {{ attempts = 1 }}

[[models]]
name = "flaky"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"
retry = {{ attempts = 3, backoff_initial = 0.05 }}

[[models]]
name = "flaky-ttft"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"
timeouts = {{ first_token = 0.3 }}
retry = {{ attempts = 3, backoff_initial = 0.05 }}

[[models]]
name = "broken"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"
options = {{ extra_body = {{ sim = {{ fail_status = 500, key = "broken" }} }} }}
retry = {{ attempts = 2, backoff_initial = 0.01 }}
fallbacks = ["relay"]
cooldown = 1.5

[[models]]
name = "dead-then-relay"
provider = "openai"
base_url = "http://127.0.0.1:{dead_port}/v1"
retry = {{ attempts = 2, backoff_initial = 0.01 }}
fallbacks = ["relay"]
cooldown = 0

[[models]]
name = "failover"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"
options = {{ extra_body = {{ sim = {{ drop_after = 6, key = "failover-primary" }} }} }}
retry = {{ attempts = 1 }}
fallbacks = ["relay-echo"]
failover = true
cooldown = 0

[[models]]
name = "no-failover"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"
options = {{ extra_body = {{ sim = {{ drop_after = 6 }} }} }}
fallbacks = ["relay-echo"]

[[models]]
name = "relay-idle"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"
timeouts = {{ idle = 0.4 }}

[[models]]
name = "relay-total"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"
timeouts = {{ total = 0.5 }}

[[models]]
name = "blackhole"
provider = "openai"
base_url = "http://127.0.0.1:{blackhole_port}/v1"
timeouts = {{ connect = 0.3 }}
retry = {{ attempts = 1 }}

[[models]]
name = "tiny-context"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim-echo"
context_tokens = 300

[[models]]
name = "dead"
provider = "openai"
base_url = "http://127.0.0.1:{dead_port}/v1"
"""


def pytest_configure(config: pytest.Config) -> None:
    # Nothing the suite starts may write into the real user data directory.
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="sluice-test-data-")


#: Suites that time what they see (a terminal's redraws, a client held to a deadline,
#: CPU per chunk): `make test` runs them alone, after the rest ran on two workers. On
#: two cores, beside another worker they measure the other worker.
SERIAL = frozenset(
    {
        "test_ask.py",
        "test_bench.py",
        "test_boundary.py",
        "test_load.py",
        "test_plot.py",
        "test_terminal.py",
        "test_terminal_ja.py",
        "test_terminal_reasoning.py",
        "test_top.py",
        # Scrolling and a 20,000-token render are timed in the browser.
        "test_web.py",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SERIAL:
            item.add_marker(pytest.mark.serial)


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def upstream(session_tmp: Path) -> Iterator[ServerProcess]:
    """A real `sluice sim` upstream, fast enough not to slow the suite down."""
    # A large --max-length: the slow-client test asks for an answer bigger than any
    # socket buffer.
    args = ["sim", "--ttft-ms", "5", "--tps", "2000", "--length", "60", "--max-length", "200000"]
    with running(args, session_tmp, name="sim", health="/health") as server:
        yield server


@pytest.fixture(scope="session")
def blackhole_port() -> Iterator[int]:
    """A port whose listen backlog is full: connecting to it hangs (a connect timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    try:
        yield listener.getsockname()[1]
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.fixture(scope="session")
def gateway_config(session_tmp: Path, upstream: ServerProcess, blackhole_port: int) -> Path:
    path = session_tmp / "gateway.toml"
    path.write_text(
        GATEWAY_CONFIG.format(
            upstream=upstream.url, dead_port=free_port(), blackhole_port=blackhole_port
        )
    )
    return path


@pytest.fixture(scope="session")
def gateway(session_tmp: Path, gateway_config: Path) -> Iterator[ServerProcess]:
    with running(["serve", "--config", str(gateway_config)], session_tmp, name="gateway") as server:
        yield server
