"""Each answer on the web page shows what it cost, where its model has a price, and the
latest one what the signed-in key's budget has left (issue 18, item 3): headless
Chromium against a gateway with a priced model and a key with a daily token budget."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.servers import ServerProcess, base_env, running
from tests.test_web import (  # noqa: F401 (fixture: browser)
    MASTER,
    browser,
    new_page,
    send,
    wait_idle,
)

CONFIG = """
[[models]]
name = "priced"
provider = "sim"
price = { input = 2.0, output = 8.0 }
options = { ttft_ms = 1, tokens_per_second = 2000, length = 30 }

[[models]]
name = "free"
provider = "sim"
options = { ttft_ms = 1, tokens_per_second = 2000, length = 30 }
"""
BUDGET = 100_000


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("web-budget")
    config = tmp / "gateway.toml"
    config.write_text(CONFIG)
    env = base_env(SLUICE_MASTER_KEY=MASTER, SLUICE_DATA_DIR=str(tmp / "data"))
    with running(["serve", "--config", str(config)], tmp, name="priced", env=env) as server:
        yield server


def admin(server: ServerProcess, path: str, body: object | None = None) -> dict[str, object]:
    request = urllib.request.Request(
        server.url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {MASTER}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, object] = json.load(response)
        return answer


def test_models_list_their_price(priced: ServerProcess) -> None:
    models = {m["id"]: m for m in admin(priced, "/v1/models")["data"]}  # type: ignore[union-attr]
    assert models["priced"]["pricing"] == {"input": 2.0, "output": 8.0}  # type: ignore[index]
    assert "pricing" not in models["free"]  # type: ignore[operator]


def test_an_answer_shows_its_cost_and_the_budget_left(
    browser: Browser,  # noqa: F811
    priced: ServerProcess,
    tmp_path: Path,
) -> None:
    key = admin(
        priced, "/v1/admin/keys", {"name": "budgeted", "budget_tokens": BUDGET, "period": "day"}
    )["key"]
    page = new_page(browser, priced)
    try:
        page.goto("/")
        page.wait_for_selector("#key-dialog[open]")
        page.fill("#api-key", str(key))
        page.press("#api-key", "Enter")
        page.wait_for_selector("#key-dialog", state="hidden")
        page.wait_for_function("() => window.sluice?.settings?.models")
        page.select_option("#model", "priced")
        send(page, "What does a river carry?")
        wait_idle(page)
        answer = page.locator(".msg.assistant").last
        cost = answer.locator('[data-metric="cost"] .metric-value')
        cost.wait_for()
        usage = page.evaluate(
            "async () => (await (await fetch(`/v1/conversations/${window.sluice.conversation.id}`,"
            " {cache: 'no-store'})).json()).messages.at(-1).usage"
        )
        expected = (usage["prompt_tokens"] * 2.0 + usage["completion_tokens"] * 8.0) / 1e6
        assert float(cost.inner_text()) == pytest.approx(expected, rel=0.05)
        # The budget row: once the answer's usage is recorded, what is left of 100,000.
        spent = usage["prompt_tokens"] + usage["completion_tokens"]
        left = answer.locator('[data-metric="budget"] .metric-value')
        page.wait_for_function(
            "(n) => [...document.querySelectorAll('.msg.assistant')].at(-1)"
            "?.querySelector('[data-metric=\"budget\"] .metric-value')"
            "?.textContent.replace(/\\D/g, '') === String(n)",
            arg=BUDGET - spent,
            timeout=10_000,
        )
        assert re.search(r"left today", left.inner_text())
        # A model without a price shows no cost.
        page.select_option("#model", "free")
        send(page, "And a second question?")
        wait_idle(page)
        last = page.locator(".msg.assistant").last
        last.locator('[data-metric="tokens"]').wait_for()
        assert last.locator('[data-metric="cost"]').count() == 0
        assert page.problems == []  # type: ignore[attr-defined]
    finally:
        page.context.close()
