"""`sluice ask`: pipes in and out, --json, --no-stream, --chunks, --raw and rendering on a
terminal, --url against a running gateway, Ctrl-C, and errors as one line with exit
codes 2 (used wrongly) and 1 (failed).

What needs no terminal runs in this process (``invoke``); pipes and terminals get a real
`sluice` process each.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import Result

from tests.faults import new_key, upstream_saw
from tests.servers import ServerProcess, base_env, free_port, running
from tests.term_session import CTRL_C, Terminal, invoke, sluice, terminal_env

FAST = "sim=" + json.dumps({"ttft_ms": 0, "tokens_per_second": 0})


def test_piped_text_and_the_question_go_in_and_raw_text_comes_out(
    tmp_path: Path, gateway_config: Path
) -> None:
    result = sluice(
        "ask", "summarize", "-m", "relay-echo", "-C", str(gateway_config),
        env=terminal_env(tmp_path), stdin="line one\nline two\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Not a terminal: the raw text as it streamed, nothing else, no escape sequences.
    assert result.stdout == "line one\nline two\n\nsummarize\n"
    assert result.stderr == ""


def test_json_no_stream_and_chunks(tmp_path: Path, gateway_config: Path) -> None:
    base = ["ask", "hello json", "-m", "relay-echo", "-C", str(gateway_config)]
    as_json = invoke(*base, "--json", data_dir=tmp_path)
    whole = invoke(*base, "--no-stream", data_dir=tmp_path)
    chunks = invoke(*base, "--chunks", data_dir=tmp_path)
    for result in (as_json, whole, chunks):
        assert result.exit_code == 0, result.stderr
    completion = json.loads(as_json.stdout)
    assert completion["object"] == "chat.completion"
    assert completion["id"].startswith("chatcmpl-") and completion["model"] == "relay-echo"
    assert completion["choices"][0]["message"] == {
        "role": "assistant",
        "content": "hello json",
        "refusal": None,
    }
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"]["completion_tokens"] > 0
    assert whole.stdout == "hello json\n"

    # Every chunk as it arrived, one JSON object a line.
    records = [json.loads(line) for line in chunks.stdout.splitlines()]
    assert {r["object"] for r in records} == {"chat.completion.chunk"}
    assert len({r["id"] for r in records}) == 1 and len({r["created"] for r in records}) == 1
    deltas = [c["delta"] for r in records for c in r["choices"]]
    assert "".join(d.get("content") or "" for d in deltas) == "hello json"
    assert [c["finish_reason"] for r in records for c in r["choices"]][-1] == "stop"
    assert records[-1]["choices"] == [] and records[-1]["usage"]["total_tokens"] > 0


def test_on_a_terminal_markdown_is_rendered_unless_raw(tmp_path: Path) -> None:
    env = terminal_env(tmp_path / "data")
    question = "Show me some python code"
    # Temperature 0: the same answer both times, the one with a heading and python code.
    greedy = ["-o", FAST, "-o", "temperature=0"]
    rendered = Terminal(["ask", question, *greedy], env, tmp_path)
    raw = Terminal(["ask", question, *greedy, "--raw"], env, tmp_path)
    try:
        assert rendered.exit_code() == 0 and raw.exit_code() == 0
    finally:
        rendered.close()
        raw.close()
    assert "```python" in raw.text and "```python" not in rendered.text
    assert "## Testing python code" in raw.text and "\x1b[" not in raw.raw
    assert "Testing python code" in rendered.text and "## Testing" not in rendered.text
    # Code is highlighted: a keyword in another colour than the name after it.
    assert re.search(r"\x1b\[[0-9;]*m(from|import|def|class)\x1b\[0m", rendered.raw)


def test_chunks_on_a_terminal_are_one_compact_line_each(tmp_path: Path) -> None:
    term = Terminal(
        ["ask", "hi", "-m", "sim-echo", "-o", FAST, "--chunks"], terminal_env(tmp_path), tmp_path
    )
    try:
        assert term.exit_code() == 0
    finally:
        term.close()
    # Time since the request, id, created, model, choice index, delta, finish reason.
    assert re.search(
        r"\d+\.\d ms chatcmpl-\w+ created=\d+ model=sim-echo \[0\] \{\"content\":\"hi\"\} "
        r"finish=None",
        term.text,
    )
    assert re.search(r"\[0\] \{\} finish=stop", term.text)
    assert re.search(r"usage=\{\"prompt_tokens\":\d+", term.text)


def test_against_a_running_gateway(tmp_path: Path, gateway: ServerProcess) -> None:
    echo = invoke("ask", "hi there", "--url", gateway.url, "-m", "relay-echo", data_dir=tmp_path)
    assert echo.exit_code == 0 and echo.stdout == "hi there\n", echo.stderr
    as_json = invoke(
        "ask", "hi there", "--url", gateway.url + "/v1", "-m", "relay-echo", "--json",
        data_dir=tmp_path,
    )  # fmt: skip
    assert as_json.exit_code == 0, as_json.stderr
    completion = json.loads(as_json.stdout)
    assert completion["id"].startswith("chatcmpl-") and completion["model"] == "relay-echo"
    assert completion["choices"][0]["message"]["content"] == "hi there"
    # No -m: the gateway's first model.
    default_model = invoke("ask", "hi", "--url", gateway.url, "--no-stream", data_dir=tmp_path)
    assert default_model.exit_code == 0 and default_model.stdout.strip(), default_model.stderr
    unknown = invoke("ask", "hi", "--url", gateway.url, "-m", "nope", data_dir=tmp_path)
    assert unknown.exit_code == 2
    assert one_line_error(unknown).startswith("sluice: error: The model `nope` does not exist")


def test_ctrl_c_stops_the_answer_and_the_upstream(
    tmp_path: Path, upstream: ServerProcess, gateway_config: Path
) -> None:
    key = new_key()
    options = "sim=" + json.dumps({"key": key, "tokens_per_second": 20, "length": 400})
    args = ["ask", "go", "-m", "relay", "-o", options, "-C", str(gateway_config)]
    term = Terminal(args, terminal_env(tmp_path / "data"), tmp_path)
    try:
        term.wait(r"relay · ttft .* (\d+) tokens")
        term.send(CTRL_C)
        assert term.exit_code() == 130
    finally:
        term.close()
    assert upstream_saw(upstream, key)["disconnected"] == 1


def one_line_error(result: Result) -> str:
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("sluice: error: "), result.stderr
    return result.stderr.strip()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--bogus", "hi"], "No such option: --bogus; see `sluice ask --help`"),
        (["-t", "5", "hi"], "Invalid value for '--temperature'"),
        (["--json", "--chunks", "hi"], "--json, --chunks and --no-stream do not go together"),
        ([], "no question: give one"),
        (["-m", "nope", "hi"], "The model `nope` does not exist"),
        (["-C", "/nonexistent/sluice.toml", "hi"], "config file /nonexistent/sluice.toml: no"),
        (["-o", "max_tokens", "hi"], "option 'max_tokens' is not KEY=VALUE"),
        (["-o", "temperature=hot", "hi"], "Invalid value for 'temperature'"),
        (["--url", "localhost:8000", "hi"], "is not an http(s) URL"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    result = invoke("ask", *args, data_dir=tmp_path)
    assert result.exit_code == 2, result.stderr
    assert expected in one_line_error(result)
    assert result.stdout == ""


def test_runtime_failures_are_one_line_and_exit_1(tmp_path: Path, gateway_config: Path) -> None:
    unreachable = invoke("ask", "hi", "--url", f"http://127.0.0.1:{free_port()}", data_dir=tmp_path)
    assert unreachable.exit_code == 1
    assert re.fullmatch(
        r"sluice: error: cannot reach the gateway at http://127\.0\.0\.1:\d+ \(connection "
        r"refused\); is `sluice serve` running there\? check --url",
        one_line_error(unreachable),
    )
    # A drop mid-answer: the partial answer is on stdout; what failed and what to do, on
    # stderr.
    config = ["-C", str(gateway_config)]
    dropping = "sim=" + json.dumps({"drop_after": 5, "ttft_ms": 0})
    dropped = invoke("ask", "hi", "-m", "relay", "-o", dropping, *config, data_dir=tmp_path)
    assert dropped.exit_code == 1 and dropped.stdout.strip()
    assert one_line_error(dropped).endswith("; the partial answer is above; run the command again")
    dead = invoke("ask", "hi", "-m", "dead", *config, data_dir=tmp_path)
    assert dead.exit_code == 1 and dead.stdout == ""
    assert re.fullmatch(
        r"sluice: error: cannot reach the upstream: .+; try again, or pick another model with -m",
        one_line_error(dead),
    )


def test_key_for_a_gateway_that_needs_one(tmp_path: Path) -> None:
    env = base_env(SLUICE_MASTER_KEY="sk-terminal-test", SLUICE_DATA_DIR=str(tmp_path / "gw"))
    with running(["serve"], tmp_path, name="locked", env=env) as gateway:
        allowed = invoke(
            "ask", "open sesame", "-m", "sim-echo", "-o", FAST, data_dir=tmp_path,
            SLUICE_URL=gateway.url, SLUICE_KEY="sk-terminal-test",
        )  # fmt: skip
        assert allowed.exit_code == 0 and allowed.stdout == "open sesame\n", allowed.stderr
        for key in ([], ["--key", "sk-wrong"]):
            refused = invoke("ask", "hi", "--url", gateway.url, *key, data_dir=tmp_path)
            assert refused.exit_code == 2
            assert re.fullmatch(
                r"sluice: error: the gateway refused the request: .+; check --key",
                one_line_error(refused),
            )
        listed = invoke("history", "list", "--url", gateway.url, data_dir=tmp_path)
        assert listed.exit_code == 2 and one_line_error(listed).endswith("; check --key")
