"""The web page marks an answer served from the response cache, live and after a reload
(a real Chromium against a gateway with the cache on)."""

from __future__ import annotations

from playwright.sync_api import Browser, Page

from tests.faults import new_key
from tests.servers import ServerProcess
from tests.test_cache import cached  # noqa: F401 (the fixture: a gateway with the cache on)
from tests.test_web import browser, new_page, open_chat, send, wait_idle  # noqa: F401

CACHED_MARK = ".msg.assistant .metrics [data-metric=cached]"


def _ask_at_temperature_zero(page: Page, question: str) -> None:
    page.select_option("#model", "relay")
    page.click("#settings-button")
    page.fill("#temperature", "0")
    page.click("#settings-dialog button[value=save]")
    send(page, question)
    wait_idle(page)


def test_a_cached_answer_is_marked(browser: Browser, cached: ServerProcess) -> None:  # noqa: F811
    page = new_page(browser, cached)
    question = f"What does a cache do? {new_key()}"
    open_chat(page)
    _ask_at_temperature_zero(page, question)
    assert page.locator(CACHED_MARK).count() == 0  # asked the model
    first = page.locator(".msg.assistant").last.inner_text()

    # The same question in a new chat: answered from the cache, and marked.
    page.keyboard.press("Control+Shift+O")
    page.wait_for_function("() => window.sluice.conversation === null")
    _ask_at_temperature_zero(page, question)
    mark = page.locator(CACHED_MARK)
    assert mark.count() == 1
    assert mark.locator(".metric-value").inner_text() == "cached"
    assert "no model tokens were spent" in (mark.get_attribute("title") or "")
    assert page.locator(".msg.assistant").last.inner_text().split("\n")[0] == first.split("\n")[0]

    # After a reload, the stored answer keeps its mark.
    chat_id = page.evaluate("window.sluice.conversation.id")
    page.reload()
    open_chat(page, chat_id)
    page.wait_for_selector(".msg.assistant .metrics [data-metric=tokens]")
    assert page.locator(CACHED_MARK).count() == 1
    assert page.problems == []  # type: ignore[attr-defined]
    page.context.close()
