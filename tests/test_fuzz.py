"""Schemathesis fuzzes every endpoint the OpenAPI document describes, against a running
gateway with authentication on: no 5xx, and no status the document does not list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.servers import base_env, running

MASTER = "sk-master-fuzz-" + "z" * 20


def test_openapi_fuzz_finds_no_server_errors(tmp_path: Path, gateway_config: Path) -> None:
    env = base_env(SLUICE_MASTER_KEY=MASTER, SLUICE_DATA_DIR=str(tmp_path / "data"))
    with running(["serve", "--config", str(gateway_config)], tmp_path, name="fuzz", env=env) as gw:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("st")),
                "run",
                gw.url + "/openapi.json",
                "--header",
                f"Authorization: Bearer {MASTER}",
                "--checks",
                "not_a_server_error,status_code_conformance",
                "--max-examples",
                "25",
                "--seed",
                "20261125",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-4000:]
        assert "Exception in ASGI application" not in gw.output()
