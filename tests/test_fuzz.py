"""Schemathesis fuzzes every endpoint the OpenAPI document describes, against a running
gateway — open, and with authentication on (an API key, then the master key, as the
Authorization header) — on SQLite and on PostgreSQL: no 5xx, no status the document
does not list, and every response in its documented schema."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.databases import postgres_database
from tests.servers import ServerProcess, base_env, running

MASTER = "sk-master-fuzz-" + "z" * 20
SEED = "20261125"
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"

# The in-process simulator and a real upstream, both fast. (Not the shared test config:
# its black-hole upstream makes every health check wait for a connect timeout.)
CONFIG = """
max_body_bytes = 65536

[[models]]
name = "sim"
provider = "sim"
options = {{ ttft_ms = 0, tokens_per_second = 0, length = 40 }}

[[models]]
name = "relay"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"
retry = {{ attempts = 1 }}
"""


@asynccontextmanager
async def database_env(database: str, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    if database == "sqlite":
        yield {"SLUICE_DATA_DIR": str(tmp_path / "data")}
        return
    async with postgres_database() as url:
        yield {"SLUICE_DATABASE_URL": url, "SLUICE_DATA_DIR": str(tmp_path / "data")}


def create_key(url: str) -> str:
    request = urllib.request.Request(
        url + "/v1/admin/keys",
        data=json.dumps({"name": "fuzz"}).encode(),
        headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        key: str = json.load(response)["key"]
        return key


def fuzz(url: str, secret: str | None) -> subprocess.CompletedProcess[str]:
    headers = ["--header", f"Authorization: Bearer {secret}"] if secret else []
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "run",
            url + "/openapi.json",
            *headers,
            "--checks",
            CHECKS,
            "--max-examples",
            "15",
            "--seed",
            SEED,
            "--request-timeout",
            "20",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize("auth", ["open", "keys"])
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_openapi_fuzz_finds_no_server_errors(
    tmp_path: Path, upstream: ServerProcess, database: str, auth: str
) -> None:
    config = tmp_path / "fuzz.toml"
    config.write_text(CONFIG.format(upstream=upstream.url))
    async with database_env(database, tmp_path) as store:
        env = base_env(**store, SLUICE_DRAIN_SECONDS="1")  # the fuzzer leaves answers running
        if auth == "keys":
            env["SLUICE_MASTER_KEY"] = MASTER
        args = ["serve", "--config", str(config)]
        with running(args, tmp_path, name="fuzz", env=env) as gw:
            secrets = [create_key(gw.url), MASTER] if auth == "keys" else [None]
            for secret in secrets:
                # The fuzzer is a blocking subprocess; the loop has nothing else to run.
                result = await asyncio.to_thread(fuzz, gw.url, secret)
                assert result.returncode == 0, result.stdout[-6000:]
            assert "Traceback" not in gw.output(), gw.output()[-6000:]
