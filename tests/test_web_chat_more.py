"""The web chat page's additions of issue 18, part 2, in headless Chromium against the
real gateway: Continue generating after a stop or a cut-off (the same answer grows), a
conversation exported as Markdown (byte for byte what `sluice history export` writes)
or JSON, the sidebar grouped by date with search snippets, the theme toggle, and
Japanese emphasis drawn bold and upright.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.faults import new_key
from tests.servers import ServerProcess
from tests.test_web import (  # noqa: F401 (fixtures: browser, desktop)
    ECHO,
    browser,
    desktop,
    last_text,
    open_chat,
    send,
    slow,
    stored_answer,
    wait_idle,
    wait_text,
    watched,
)
from tests.web_helpers import ROOT, chat_turn, conversation, new_conversation

ANSWER = ".msg.assistant"


@pytest.fixture
def page(desktop: BrowserContext) -> Iterator[Page]:  # noqa: F811
    """A tab of the module's desktop browser, failing the test on any script error."""
    opened = watched(desktop.new_page())
    yield opened
    problems = opened.problems  # type: ignore[attr-defined]
    opened.close()
    assert problems == []


def wait_grown(page: Page, before: str) -> None:
    """Until the last answer is longer than ``before`` and the page is idle again."""
    wait_text(page, len(before) + 1)
    wait_idle(page)


# --- continue generating ---------------------------------------------------------------------


def test_continue_after_a_stop_extends_the_same_answer(page: Page, gateway: ServerProcess) -> None:
    chat = new_conversation(gateway.url, model="sim", options=slow(40, 160))
    open_chat(page, chat["id"])
    send(page, "Tell me about rivers")
    wait_text(page, 40)
    page.click("#stop")
    wait_idle(page)
    answer = page.locator(ANSWER).last
    answer.locator(".badge.stopped").wait_for()
    stopped = stored_answer(gateway, chat["id"])
    assert stopped["status"] == "incomplete"
    partial = last_text(page)
    assert partial == stopped["content"]

    button = answer.locator("button.continue")
    assert button.is_visible()
    button.click()
    wait_grown(page, partial)

    assert page.locator(ANSWER).count() == 1, "extended in place, not a new answer"
    assert answer.get_attribute("data-id") == stopped["id"]
    grown = last_text(page)
    assert grown.startswith(partial) and len(grown) > len(partial)
    assert answer.locator(".badge").is_hidden(), "finished: no Stopped badge any more"
    assert button.is_hidden()
    saved = stored_answer(gateway, chat["id"])
    assert saved["id"] == stopped["id"] and saved["status"] == "complete"
    assert saved["content"] == grown
    assert [m["role"] for m in conversation(gateway.url, chat["id"])["messages"]] == [
        "user",
        "assistant",
    ]


def test_continue_after_a_length_cut_off(page: Page, gateway: ServerProcess) -> None:
    chat = new_conversation(gateway.url, model="sim", options={"max_tokens": 12})
    open_chat(page, chat["id"])
    send(page, "A long story, please")
    wait_idle(page)
    answer = page.locator(ANSWER).last
    answer.locator(".badge.length").wait_for()
    first = last_text(page)
    for _ in range(2):  # each continuation is cut off again, and can be continued again
        answer.locator("button.continue").click()
        wait_grown(page, first)
        answer.locator(".badge.length").wait_for()
        longer = last_text(page)
        assert longer.startswith(first) and len(longer) > len(first)
        first = longer
    assert stored_answer(gateway, chat["id"])["content"] == first
    # After a reload the stored answer offers it too.
    page.reload()
    page.wait_for_function(f"() => window.sluice.conversation?.id === {chat['id']!r}")
    page.locator(f"{ANSWER} button.continue").wait_for()
    assert last_text(page) == first


def test_a_continue_sent_offline_leaves_the_answer_to_continue(
    page: Page, gateway: ServerProcess
) -> None:
    chat = new_conversation(gateway.url, model="sim", options={"max_tokens": 12})
    open_chat(page, chat["id"])
    send(page, "Go on and on")
    wait_idle(page)
    answer = page.locator(ANSWER).last
    answer.locator(".badge.length").wait_for()
    first = last_text(page)
    page.context.set_offline(True)
    try:
        answer.locator("button.continue").click()
        answer.locator(".msg-status.error .retry").wait_for()
        assert last_text(page) == first, "the answer's text stays"
    finally:
        page.context.set_offline(False)
    page.wait_for_selector("#banner[data-state=up]:not([hidden])")
    # Back online the page reads the conversation again: the answer as stored, with its
    # Continue (nothing was sent, nothing lost).
    answer.locator(".msg-status.error").wait_for(state="detached")
    assert last_text(page) == first
    answer.locator("button.continue").click()
    wait_grown(page, first)
    # Continued, not answered again: still one version, the same message, longer.
    assert page.locator(f"{ANSWER} .versions").is_hidden()
    saved = stored_answer(gateway, chat["id"])
    assert saved["content"] == last_text(page) and saved["content"].startswith(first)
    assert saved["versions"]["count"] == 1


def test_no_continue_on_a_finished_answer(page: Page, gateway: ServerProcess) -> None:
    chat = new_conversation(gateway.url, model="sim")
    open_chat(page, chat["id"])
    send(page, "Short and complete")
    wait_idle(page)
    page.locator(f"{ANSWER} .metrics [data-metric=tokens]").wait_for()
    assert page.locator(f"{ANSWER} button.continue").is_hidden()


# --- export ----------------------------------------------------------------------------------


def cli_export(gateway: ServerProcess, conversation_id: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sluice",
            "history",
            "export",
            conversation_id,
            "--url",
            gateway.url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=True,
    )
    return result.stdout


def download(page: Page, fmt: str, tmp_path: Path) -> tuple[str, str]:
    page.click("#export-button")
    with page.expect_download() as info:
        page.click(f"#export-menu [data-format={fmt}]")
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    return info.value.suggested_filename, saved.read_text(encoding="utf-8")


def test_export_as_markdown_and_json(page: Page, gateway: ServerProcess, tmp_path: Path) -> None:
    tag = new_key()
    chat = new_conversation(
        gateway.url, title=f"Rivers of Japan {tag}", model="sim", system_prompt="Be brief."
    )
    chat_turn(gateway.url, {"conversation_id": chat["id"], "message": "Name one **river**"})
    chat_turn(gateway.url, {"conversation_id": chat["id"], "message": "And another"})
    open_chat(page)
    assert page.locator("#export-button").is_hidden(), "a new chat has nothing to export"
    open_chat(page, chat["id"])
    page.locator(f"{ANSWER} >> nth=1").wait_for()

    name, markdown = download(page, "markdown", tmp_path)
    assert name == f"Rivers-of-Japan-{tag}.md"
    assert markdown == cli_export(gateway, chat["id"]), "the terminal's export, byte for byte"
    assert markdown.startswith(f"# Rivers of Japan {tag}\n")
    assert "## You\n\nName one **river**\n" in markdown and "- system prompt: Be brief." in markdown

    name, text = download(page, "json", tmp_path)
    assert name.endswith(".json")
    exported = json.loads(text)
    assert exported == conversation(gateway.url, chat["id"])
    assert [m["content"] for m in exported["messages"]][0::2] == [
        "Name one **river**",
        "And another",
    ]

    # The menu is keyboard-reachable and Escape closes it.
    page.click("#export-button")
    page.wait_for_selector("#export-menu:not([hidden])")
    assert page.evaluate("document.activeElement.dataset.format") == "markdown"
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.dataset.format") == "json"
    page.keyboard.press("Escape")
    page.wait_for_selector("#export-menu", state="hidden")
    assert page.evaluate("document.activeElement.id") == "export-button"


# --- sidebar: dates and snippets -------------------------------------------------------------


def group_of(page: Page, conversation_id: str) -> str:
    """The date group the sidebar lists a conversation under."""
    found: str = page.evaluate(
        """(id) => {
            let li = document.querySelector(`#conversations li[data-id="${id}"]`);
            while (li && !li.dataset.group) li = li.previousElementSibling;
            return li ? li.dataset.group : '';
        }""",
        conversation_id,
    )
    return found


def test_sidebar_groups_by_date(desktop: BrowserContext, gateway: ServerProcess) -> None:  # noqa: F811
    chat = new_conversation(gateway.url, title=f"Dated {new_key()}", model="sim")
    now = time.time()
    expected = [(0, "Today"), (1, "Yesterday"), (3, "Previous 7 days"), (9, "Older")]
    for days, group in expected:
        page = watched(desktop.new_page())
        try:
            # The page lives `days` later: the conversation, updated now, is that old.
            page.clock.set_fixed_time(now + days * 86400)
            open_chat(page)
            page.wait_for_selector(f"#conversations li[data-id='{chat['id']}']")
            assert group_of(page, chat["id"]) == group
            label = page.locator(".conversation-group", has_text=group).first
            assert label.get_attribute("role") == "heading"
            assert problems_of(page) == []
        finally:
            page.close()


def problems_of(page: Page) -> list[str]:
    problems: list[str] = page.problems  # type: ignore[attr-defined]
    return problems


def test_date_groups_follow_calendar_days(page: Page, gateway: ServerProcess) -> None:
    open_chat(page)
    groups = page.evaluate(
        """async () => {
            const { dateGroup } = await import('/static/js/dates.js');
            const now = new Date(2026, 2, 10, 0, 30);  // 00:30 on 10 March
            const at = (d, h, m = 0) => new Date(2026, 2, d, h, m).getTime() / 1000;
            return [at(10, 0, 1), at(9, 23, 59), at(9, 0, 0), at(8, 23), at(3, 0), at(2, 23)]
                .map((t) => dateGroup(t, now));
        }"""
    )
    assert groups == [
        "Today",
        "Yesterday",  # a minute before midnight is yesterday, though 31 minutes ago
        "Yesterday",
        "Previous 7 days",
        "Previous 7 days",
        "Older",
    ]


def test_search_results_show_a_highlighted_snippet(page: Page, gateway: ServerProcess) -> None:
    tag = new_key()
    chat = new_conversation(gateway.url, title=f"Travel notes {tag}", model="sim", options=ECHO)
    filler = " ".join(f"filler{i}" for i in range(30))
    message = f"{filler} the Serengeti{tag} spice <b>tour</b>"
    chat_turn(gateway.url, {"conversation_id": chat["id"], "message": message})
    open_chat(page)
    page.fill("#search", f"serengeti{tag}")
    item = page.locator(f"#conversations li[data-id='{chat['id']}']")
    item.locator(".snippet mark").wait_for()
    assert item.locator(".snippet mark").inner_text() == f"Serengeti{tag}"
    snippet = item.locator(".snippet").inner_text()
    assert snippet.startswith("…") and "spice <b>tour</b>" in snippet, "shown as text"
    assert item.locator(".snippet b").count() == 0
    assert page.locator("#conversations .conversation-group").count() == 0, "no dates in results"
    # A title match has no snippet; clearing the search brings the dates back.
    page.fill("#search", f"Travel notes {tag}")
    page.wait_for_function("() => !document.querySelector('#conversations .snippet')")
    page.fill("#search", "")
    page.locator("#conversations .conversation-group").first.wait_for()


# --- theme and CJK emphasis ------------------------------------------------------------------


def background(page: Page) -> str:
    color: str = page.evaluate("getComputedStyle(document.body).backgroundColor")
    return color


def test_theme_toggle_is_remembered(page: Page, gateway: ServerProcess) -> None:
    page.emulate_media(color_scheme="light")
    open_chat(page)
    white, dark = "rgb(255, 255, 255)", "rgb(26, 27, 31)"
    assert background(page) == white
    toggle = page.locator("#theme-button")
    assert toggle.inner_text() == "Theme: system"
    toggle.click()
    assert toggle.inner_text() == "Theme: light"
    assert background(page) == white
    toggle.click()
    assert toggle.inner_text() == "Theme: dark"
    assert background(page) == dark
    page.reload()
    page.wait_for_function("() => window.sluice !== undefined")
    assert background(page) == dark, "remembered across a reload"
    assert page.evaluate("localStorage.getItem('sluice.theme')") == "dark"
    toggle.click()  # back to the system's choice
    assert toggle.inner_text() == "Theme: system"
    assert background(page) == white
    page.emulate_media(color_scheme="dark")
    assert background(page) == dark, "system again: follows the system"
    page.emulate_media(color_scheme="light")
    toggle.click()
    toggle.click()
    assert background(page) == dark
    page.emulate_media(color_scheme="light")
    assert background(page) == dark, "a chosen theme wins over the system's"
    toggle.click()
    assert page.evaluate("localStorage.getItem('sluice.theme')") is None


def test_japanese_emphasis_is_bold_not_slanted(page: Page, gateway: ServerProcess) -> None:
    chat = new_conversation(gateway.url, model="sim", options=ECHO)
    chat_turn(
        gateway.url,
        {"conversation_id": chat["id"], "message": "これは*とても重要*です。And *this* too."},
    )
    open_chat(page, chat["id"])
    ems = page.locator(f"{ANSWER} em")
    ems.first.wait_for()
    assert page.locator(f"{ANSWER} .msg-body").get_attribute("lang") == "ja"
    styles = ems.evaluate_all(
        "(els) => els.map((e) => [e.textContent, getComputedStyle(e).fontStyle,"
        " getComputedStyle(e).fontWeight])"
    )
    assert ["とても重要", "normal", "700"] in styles
    # English emphasis elsewhere stays italic.
    english = new_conversation(gateway.url, model="sim", options=ECHO)
    chat_turn(gateway.url, {"conversation_id": english["id"], "message": "Plain *emphasis* here"})
    open_chat(page, english["id"])
    page.locator(f"{ANSWER} em").first.wait_for()
    style = page.locator(f"{ANSWER} em").first.evaluate("(e) => getComputedStyle(e).fontStyle")
    assert style == "italic"
    assert page.locator(f"{ANSWER} .msg-body").get_attribute("lang") is None
