"""The web chat page when things go wrong (issue 18), in headless Chromium against real
gateway processes: a question that could not be sent stays, editable and retryable,
across reconnects and reloads; a refused one counts down to ``Retry-After``; an answer
cut short by a crashed server shows as interrupted, not stopped; live numbers stay honest
after a resume; a phone lands at the bottom of a conversation; a table asked for is one.
"""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.servers import ServerProcess, base_env, free_port, running
from tests.test_web import (  # noqa: F401 (fixtures: browser, desktop, secured)
    MASTER,
    browser,
    desktop,
    eventually,
    last_text,
    new_page,
    open_chat,
    secured,
    send,
    slow,
    stored_answer,
    wait_idle,
    wait_text,
    watched,
)
from tests.web_helpers import call, chat_turn, conversation, new_conversation

UNSENT = ".msg.user.unsent"
FAILED = ".msg.assistant .msg-status.error"


@pytest.fixture
def page(desktop: BrowserContext) -> Iterator[Page]:  # noqa: F811
    """A tab of the module's desktop browser, failing the test on any script error."""
    opened = watched(desktop.new_page())
    yield opened
    problems = opened.problems  # type: ignore[attr-defined]
    opened.close()
    assert problems == []


def kept(page: Page, conversation_id: str) -> bool:
    """Whether this browser keeps an unsent question for the conversation."""
    found: bool = page.evaluate(f"localStorage.getItem('sluice.unsent.{conversation_id}') !== null")
    return found


def contents(base: str, conversation_id: str) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in conversation(base, conversation_id)["messages"]]


# --- a. a question sent while offline -------------------------------------------------------


def test_offline_question_survives_reconnect_and_reload(page: Page, gateway: ServerProcess) -> None:
    chat = new_conversation(gateway.url, model="sim")
    chat_turn(gateway.url, {"conversation_id": chat["id"], "message": "First question"})
    open_chat(page, chat["id"])
    page.wait_for_selector(".msg.assistant .metrics [data-metric=tokens]")
    page.context.set_offline(True)
    try:
        send(page, "Asked while offline")
        page.wait_for_selector(FAILED)
        page.wait_for_selector(f"{UNSENT} >> text=Asked while offline")
    finally:
        page.context.set_offline(False)
    page.wait_for_selector("#banner[data-state=up]:not([hidden])")
    # Back online the page reads the conversation again: the question must stay.
    page.wait_for_timeout(1200)
    assert page.locator(f"{UNSENT} .bubble").inner_text() == "Asked while offline"
    assert page.locator(".msg.assistant .retry").is_visible()
    assert contents(gateway.url, chat["id"])[-1][0] == "assistant"  # nothing stored

    # And across a reload: kept in this browser until it is sent.
    page.reload()
    open_chat(page, chat["id"])
    page.wait_for_selector(f"{UNSENT} >> text=Asked while offline")
    assert page.locator(".msg.assistant .retry").is_visible()
    assert kept(page, chat["id"])

    # Editable: the edited question is the one sent.
    page.click(f"{UNSENT} .edit")
    page.fill(".edit-input", "Asked again, edited")
    page.press(".edit-input", "Enter")
    wait_idle(page)
    assert stored_answer(gateway, chat["id"])["status"] == "complete"
    assert contents(gateway.url, chat["id"])[2] == ("user", "Asked again, edited")
    assert page.locator(UNSENT).count() == 0
    assert not kept(page, chat["id"])


def test_offline_question_is_retried_as_it_was(page: Page, gateway: ServerProcess) -> None:
    chat = new_conversation(gateway.url, model="sim")
    open_chat(page, chat["id"])
    page.context.set_offline(True)
    try:
        send(page, "Retry me")
        page.wait_for_selector(FAILED)
    finally:
        page.context.set_offline(False)
    page.wait_for_selector("#banner[data-state=up]:not([hidden])")
    page.click(".msg.assistant .retry")
    wait_idle(page)
    assert stored_answer(gateway, chat["id"])["status"] == "complete"
    assert contents(gateway.url, chat["id"])[0] == ("user", "Retry me")
    assert page.locator(".msg.user").count() == 1
    assert page.locator(UNSENT).count() == 0 and not kept(page, chat["id"])


# --- c. a refused question: 400 too long, 429 rate limited --------------------------------------


def test_a_question_too_long_stays_editable(page: Page, gateway: ServerProcess) -> None:
    chat = new_conversation(gateway.url, model="sim")
    open_chat(page, chat["id"])
    long = "word " * 9000  # past the model's 8192-token context, under the body limit
    send(page, long)
    page.wait_for_selector(FAILED)
    assert "HTTP 400" in page.inner_text(FAILED)
    # The same request would fail the same way: no Retry, but the words are there to edit.
    assert page.locator(".msg.assistant .retry").count() == 0
    assert page.locator(UNSENT).count() == 1
    page.reload()
    open_chat(page, chat["id"])
    page.wait_for_selector(UNSENT)
    page.click(f"{UNSENT} .edit")
    assert page.input_value(".edit-input").strip() == long.strip()
    page.fill(".edit-input", "A short one")
    page.press(".edit-input", "Enter")
    wait_idle(page)
    assert contents(gateway.url, chat["id"])[0] == ("user", "A short one")
    assert not kept(page, chat["id"])


def _limited_key(server: ServerProcess) -> str:
    request = urllib.request.Request(
        server.url + "/v1/admin/keys",
        data=json.dumps({"name": "one-a-minute", "rpm": 1}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {MASTER}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        key: str = json.load(response)["key"]
        return key


def test_rate_limited_question_counts_down_and_survives_reload(
    browser: Browser,  # noqa: F811
    secured: ServerProcess,  # noqa: F811
) -> None:
    page = new_page(browser, secured)
    try:
        page.goto("/")
        page.wait_for_selector("#key-dialog[open]")
        page.fill("#api-key", _limited_key(secured))
        page.press("#api-key", "Enter")
        page.wait_for_selector("#key-dialog", state="hidden")
        page.wait_for_function("() => window.sluice !== undefined")
        page.select_option("#model", "sim")
        send(page, "The one question this minute")
        wait_idle(page)
        send(page, "One too many")
        page.wait_for_selector(FAILED)
        assert "HTTP 429" in page.inner_text(FAILED)
        # Retry waits for Retry-After, counting down.
        retry = page.locator(".msg.assistant .retry")
        assert retry.is_disabled()
        first = int(re.findall(r"\d+", retry.inner_text())[0])
        assert 0 < first <= 60
        page.wait_for_function(
            f"() => /\\d+/.test(document.querySelector('.msg.assistant .retry').textContent)"
            f" && +document.querySelector('.msg.assistant .retry').textContent.match(/\\d+/)[0]"
            f" < {first}",
            timeout=5000,
        )
        assert page.locator(f"{UNSENT} .bubble").inner_text() == "One too many"
        page.reload()
        page.wait_for_function("() => window.sluice?.conversation?.id")
        page.wait_for_selector(f"{UNSENT} >> text=One too many")
        assert page.locator(".msg.assistant .retry").is_disabled()
        assert page.problems == []  # type: ignore[attr-defined]
    finally:
        page.context.close()


# --- b. a server killed mid-answer ----------------------------------------------------------------


@pytest.fixture
def doomed(tmp_path: Path, gateway_config: Path) -> dict[str, Any]:
    """Arguments to start (and start again) a gateway of its own on one port and store."""
    return {
        "args": ["serve", "--config", str(gateway_config)],
        "tmp": tmp_path,
        "env": base_env(SLUICE_DATA_DIR=str(tmp_path / "data")),
        "port": free_port(),
    }


def test_a_crash_mid_answer_shows_interrupted_with_retry(
    browser: Browser,  # noqa: F811
    doomed: dict[str, Any],
) -> None:
    start = {**doomed}
    args, tmp = start.pop("args"), start.pop("tmp")
    with running(args, tmp, name="doomed", **start) as server:
        page = new_page(browser, server)
        chat = new_conversation(server.url, model="sim", options=slow(30, 400))
        open_chat(page, chat["id"])
        send(page, "Tell me about lighthouses")
        wait_text(page, 150)
        eventually(lambda: len(conversation(server.url, chat["id"])["messages"][-1]["content"]))
        server.stop(signal.SIGKILL)
    had = len(last_text(page))
    page.wait_for_selector(".msg.assistant .badge.reconnecting")
    try:
        with running(args, tmp, name="restarted", **start) as server:
            page.wait_for_selector(".msg.assistant .badge.interrupted", timeout=20_000)
            assert page.inner_text(".msg.assistant .badge.interrupted") == "Interrupted"
            stored = conversation(server.url, chat["id"])["messages"][-1]
            # The store tells an interruption from a stop, for every API client.
            assert (stored["status"], stored["finish_reason"]) == ("incomplete", "interrupted")
            answer = page.locator(".msg.assistant").last
            # The text the page had is kept (the store has up to a second less).
            assert len(last_text(page)) >= had >= len(stored["content"]) > 0
            assert answer.locator(".badge.stopped").count() == 0
            assert "N/A" not in answer.locator(".metrics").inner_text()
            assert answer.locator(".msg-status").inner_text().startswith("Interrupted")
            # Continue is offered beside Retry (issue 18, part 2).
            assert answer.locator("button.continue").is_visible()
            # Retry answers again, as a new version (at full speed, this time).
            call(f"{server.url}/v1/conversations/{chat['id']}", "PATCH", {"options": {}})
            answer.locator(".retry").click()
            wait_idle(page, 30_000)
            page.wait_for_selector(".msg.assistant .version-label:text('2 / 2')")
            assert stored_answer(server, chat["id"])["status"] == "complete"
            assert page.problems == []  # type: ignore[attr-defined]
    finally:
        page.context.close()


def first_frame(response: Any) -> dict[str, Any]:
    """The first chat frame (``start``) of a POST /chat response being read."""
    line = ""
    while not line.startswith("data: "):
        line = response.readline().decode()
    frame: dict[str, Any] = json.loads(line.removeprefix("data: "))
    return frame


def test_an_answer_cut_by_a_shutdown_is_stored_interrupted(
    doomed: dict[str, Any], gateway: ServerProcess
) -> None:
    """SIGTERM drains for ``drain_seconds``, then ends the rest in-band: stored as
    interrupted, with the text so far — and a reader's own stop stays ``incomplete``."""
    start = {**doomed}
    args, tmp = start.pop("args"), start.pop("tmp")
    start["env"] = {**start["env"], "SLUICE_DRAIN_SECONDS": "0.5"}
    with running(args, tmp, name="draining", **start) as server:
        body = {"message": "A long story", "model": "sim", "options": slow(40, 2000)}
        request = urllib.request.Request(
            server.url + "/chat",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            first = first_frame(response)
            response.read(2000)  # some of the answer
            server.stop(signal.SIGTERM)
            rest = response.read().decode()
    assert "shutting_down" in rest
    with running(args, tmp, name="after-drain", **start) as server:
        answer = conversation(server.url, first["conversation_id"])["messages"][-1]
        assert (answer["status"], answer["finish_reason"]) == ("incomplete", "interrupted")
        assert answer["content"]
        # Continue carries the interrupted answer on, in the same message.
        events = chat_turn(
            server.url,
            {
                "conversation_id": first["conversation_id"],
                "continue_id": answer["id"],
                "options": {"sim": {"length": 20}},
            },
        )
        assert "event: done" in events
        grown = stored_answer(server, first["conversation_id"])
        assert grown["id"] == answer["id"] and grown["status"] == "complete"
        assert grown["content"].startswith(answer["content"])
        assert len(grown["content"]) > len(answer["content"])

    # A stop is not an interruption.
    chat = new_conversation(gateway.url, model="sim", options=slow(40, 2000))
    request = urllib.request.Request(
        gateway.url + "/chat",
        data=json.dumps({"conversation_id": chat["id"], "message": "Stop me"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        stream_id = first_frame(response)["stream_id"]
        urllib.request.urlopen(
            urllib.request.Request(
                f"{gateway.url}/v1/streams/{stream_id}/cancel", data=b"", method="POST"
            ),
            timeout=10,
        ).close()
        response.read()
    stopped = stored_answer(gateway, chat["id"])
    assert (stopped["status"], stopped["finish_reason"]) == ("incomplete", "incomplete")


# --- d. live numbers after a resume -------------------------------------------------------------


def test_live_metrics_after_a_reload_are_honest(page: Page, gateway: ServerProcess) -> None:
    chat = new_conversation(gateway.url, model="sim", options=slow(25, 300))
    open_chat(page, chat["id"])
    send(page, "Describe the water cycle")
    wait_text(page, 100)
    assert eventually(
        lambda: len(conversation(gateway.url, chat["id"])["messages"][-1]["content"]) >= 100
    )
    page.reload()
    open_chat(page, chat["id"])
    page.wait_for_function("() => window.sluice.turn !== null")
    speeds, units = [], set()
    for _ in range(6):
        page.wait_for_timeout(400)
        metrics = page.locator(".msg.assistant .metrics.live")
        if not metrics.count():
            break
        speed = metrics.locator("[data-metric=speed] .metric-value").inner_text()
        tokens = metrics.locator("[data-metric=tokens] .metric-value").inner_text()
        units.add(speed.split()[-1])
        assert "chunks" not in tokens
        if speed != "N/A":
            speeds.append(float(speed.split()[0].lstrip("≈")))
        ttft = metrics.locator("[data-metric=ttft] .metric-value").inner_text()
        assert ttft == "…", "the time to first token is not known to a page that joined late"
    wait_idle(page)
    # Measured over what arrived live: near the model's 25 tokens/s, not the replay's burst.
    assert speeds and max(speeds) < 50, speeds
    assert units <= {"tok/s", "N/A"}
    final = page.locator(".msg.assistant .metrics [data-metric=speed] .metric-value").inner_text()
    assert final.endswith("tok/s")


# --- f. a phone lands at the bottom ---------------------------------------------------------------


def test_phone_opens_a_conversation_at_the_bottom(
    browser: Browser,  # noqa: F811
    gateway: ServerProcess,
) -> None:
    chat = new_conversation(gateway.url, model="sim", options={"seed": 29, "sim": {"length": 320}})
    for question in ("Compare caching strategies for a Python web service", "Show me a table"):
        chat_turn(gateway.url, {"conversation_id": chat["id"], "message": question})
    page = new_page(
        browser,
        gateway,
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    try:
        for _ in range(3):
            open_chat(page, chat["id"])
            page.wait_for_selector(".msg.assistant .metrics [data-metric=tokens]")
            page.wait_for_timeout(600)  # the list, the models and the fonts have all landed
            gap = page.evaluate(
                "(() => { const s = document.querySelector('#scroller');"
                " return s.scrollHeight - s.scrollTop - s.clientHeight; })()"
            )
            assert gap <= 2, f"{gap} px short of the bottom"
            page.goto("about:blank")

        # Friction on the same phone: every target is at least 44 px, closed sidebar or
        # open, and the model picker shows its whole choice.
        open_chat(page, chat["id"])
        page.wait_for_selector(".msg.assistant .metrics [data-metric=tokens]")
        page.wait_for_function("() => document.querySelectorAll('#model option').length > 1")
        assert page.evaluate(SMALL_TARGETS) == []
        page.select_option("#model", "")
        assert page.evaluate(PICKER_SHOWS_ALL)
        page.click("#sidebar-toggle")
        page.wait_for_selector("#sidebar", state="visible")
        assert page.evaluate(SMALL_TARGETS) == []
        assert page.problems == []  # type: ignore[attr-defined]
    finally:
        page.context.close()


# Buttons, links and fields a finger must hit (links inside an answer's text are exempt,
# as WCAG 2.5.5 exempts inline links), smaller than 44 x 44 px.
SMALL_TARGETS = """() => [...document.querySelectorAll(
        'button, a[href], select, input, textarea, summary')]
    .filter((e) => e.checkVisibility({ visibilityProperty: true }))
    .filter((e) => !e.closest('.md p, .md li, .md td, .md th'))
    .map((e) => { const r = e.getBoundingClientRect();
        return [e.id || e.className, Math.round(r.width), Math.round(r.height)]; })
    .filter(([, w, h]) => w < 44 || h < 44)"""

# The picker is wide enough for the name it shows (plus its arrow), inside the screen.
PICKER_SHOWS_ALL = """() => {
    const select = document.querySelector('#model');
    const probe = document.createElement('span');
    probe.style.font = getComputedStyle(select).font;
    probe.style.whiteSpace = 'pre';
    probe.textContent = select.selectedOptions[0].text;
    document.body.appendChild(probe);
    const needed = probe.getBoundingClientRect().width;
    probe.remove();
    const box = select.getBoundingClientRect();
    return box.right <= window.innerWidth && select.clientWidth >= needed + 24;
}"""


# --- friction: which model wrote it, and whether it is a simulated one ----------------------


def test_simulated_model_is_named_and_marked(page: Page, gateway: ServerProcess) -> None:
    open_chat(page)
    page.wait_for_function("() => document.querySelectorAll('#model option').length > 1")
    assert page.locator("#model option").first.inner_text() == "Default (sim)"
    assert page.locator("#sim-badge").is_visible()
    send(page, "Hello there")
    wait_idle(page)
    assert page.inner_text(".msg.assistant .model-name") == "sim · simulated"
    chat_id = page.evaluate("window.sluice.conversation.id")
    page.reload()
    open_chat(page, chat_id)
    page.wait_for_selector(".msg.assistant .model-name:text('sim · simulated')")
    # A model behind another provider is not marked.
    page.select_option("#model", "relay")
    page.wait_for_selector("#sim-badge", state="hidden")


# --- g. "Show me a table" ------------------------------------------------------------------------


def test_show_me_a_table_draws_a_table(page: Page, gateway: ServerProcess) -> None:
    chat = new_conversation(gateway.url, model="sim")
    open_chat(page, chat["id"])
    send(page, "Show me a table")
    wait_idle(page)
    table = page.locator(".msg.assistant .md table")
    assert table.count() == 1
    assert table.locator("thead th").count() >= 2
    assert table.locator("tbody tr").count() >= 2
    assert "|" not in page.locator(".msg.assistant .md").inner_text()
