"""The command line: configuration errors are one clear line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import base_env, free_port, running


def sluice(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args],
        capture_output=True,
        text=True,
        timeout=20,
        env=env or base_env(),
    )


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("keepalive_seconds = 'soon'\n", "key keepalive_seconds: Input should be a valid number"),
        (
            "[[models]]\nname = 'a'\nprovider = 'sim'\nupstrem_model = 'x'\n",
            "key models[0].upstrem_model",
        ),
        ("[[models]]\nname = 'a'\n", "key models[0].provider: Field required"),
        ("[[models]]\nname = 'a'\nprovider = 'nope'\n", "unknown provider 'nope'"),
        (
            "[[models]]\nname = 'a'\nprovider = 'openai'\nbase_url = 'ftp://x'\n",
            "key models[0].base_url",
        ),
        (
            "[[models]]\nname='a'\nprovider='sim'\n[[models]]\nname='a'\nprovider='sim'\n",
            "duplicate model name 'a'",
        ),
        ("[[models]]\nname = 'a'\nprovider = 'sim'\noptions = { ttft_ms = -1 }\n", "ttft_ms"),
        ("this is = = not toml\n", "invalid TOML"),
    ],
)
def test_bad_config_file_exits_2_naming_file_and_key(
    tmp_path: Path, toml: str, expected: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    result = sluice("serve", "--config", str(config), "--port", str(free_port()))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert str(config) in result.stderr or "model 'a'" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = sluice("serve", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2
    assert "absent.toml: no such file" in result.stderr


def test_bad_environment_setting_exits_2() -> None:
    result = sluice("serve", env=base_env(SLUICE_PORT="not-a-port"))
    assert result.returncode == 2
    assert "SLUICE_PORT" in result.stderr


def test_bad_flag_is_a_usage_error() -> None:
    result = sluice("serve", "--port", "many")
    assert result.returncode == 2
    assert "--port" in result.stderr


def test_serve_with_workers_and_env_settings(tmp_path: Path) -> None:
    port = free_port()
    # Workers share sessions, limits and streams through Redis (required for N > 1).
    env = base_env(
        SLUICE_KEEPALIVE_SECONDS="5",
        SLUICE_REDIS_URL="redis://127.0.0.1:6379/0",
        SLUICE_REDIS_PREFIX="test-cli-" + tmp_path.name[-16:],
    )
    with running(
        ["serve", "--workers", "2"], tmp_path, name="workers", env=env, port=port
    ) as server:
        import urllib.request

        with urllib.request.urlopen(server.url + "/v1/models", timeout=5) as response:
            assert b'"sim"' in response.read()
