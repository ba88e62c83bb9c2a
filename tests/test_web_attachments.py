"""Attachments on the web page, in headless Chromium against the real gateway: a picked
image is shown as a chip, sent, drawn as a thumbnail with the question (also after a
reload) and described by the simulated model; a file that is too large is refused in the
page with a message naming it, and what was typed stays."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, FilePayload, Page

from tests.servers import ServerProcess
from tests.test_attachments import png
from tests.test_web import (  # noqa: F401 (fixtures: browser, desktop)
    browser,
    desktop,
    last_text,
    open_chat,
    wait_idle,
    watched,
)
from tests.web_helpers import conversation

QUESTION = ".msg.user"


@pytest.fixture
def page(desktop: BrowserContext) -> Iterator[Page]:  # noqa: F811
    opened = watched(desktop.new_page())
    yield opened
    problems = opened.problems  # type: ignore[attr-defined]
    opened.close()
    assert problems == []


def pick(page: Page, name: str, mime: str, data: bytes) -> None:
    file: FilePayload = {"name": name, "mimeType": mime, "buffer": data}
    page.set_input_files("#attach-input", files=[file])


def test_an_image_is_sent_shown_and_described(page: Page, gateway: ServerProcess) -> None:
    open_chat(page)
    page.fill("#input", "What is in this picture?")
    assert page.locator("#attach").is_visible()
    pick(page, "cat.png", "image/png", png(64, 32))
    chip = page.locator(".attach-chips .attach-chip")
    chip.wait_for()
    assert chip.locator("img.attach-thumb").count() == 1
    assert "cat.png" in chip.inner_text()
    page.press("#input", "Enter")
    wait_idle(page)
    assert page.locator(".attach-chips .attach-chip").count() == 0, "sent: the box is empty"
    assert last_text(page).startswith("I received an image (PNG, 64x32, 1 KB).")
    thumb = page.locator(f"{QUESTION} .msg-files img.attach-thumb")
    assert thumb.count() == 1
    conversation_id = page.evaluate("window.sluice.conversation.id")
    stored = conversation(gateway.url, conversation_id)["messages"][0]
    assert [a["name"] for a in stored["attachments"]] == ["cat.png"]

    page.reload()
    page.wait_for_function(f"() => window.sluice.conversation?.id === {conversation_id!r}")
    thumb = page.locator(f"{QUESTION} .msg-files img.attach-thumb")
    thumb.wait_for()
    assert thumb.get_attribute("src") == stored["attachments"][0]["url"]
    # The image really loads from the gateway (same origin, the page's CSP allows it).
    page.wait_for_function(
        "() => document.querySelector('.msg.user .msg-files img')?.naturalWidth === 64"
    )
    assert page.locator(f"{QUESTION} .bubble").inner_text() == "What is in this picture?"


def test_a_text_file_is_inlined_and_shown_as_a_chip(page: Page, gateway: ServerProcess) -> None:
    open_chat(page)
    page.fill("#input", "Summarise it")
    pick(page, "notes.md", "text/markdown", b"# Notes\n\none\ntwo\n")
    page.locator(".attach-chips .attach-chip").wait_for()
    page.press("#input", "Enter")
    wait_idle(page)
    assert last_text(page).startswith("I received the file notes.md (4 lines).")
    chip = page.locator(f"{QUESTION} .msg-files .attach-chip.text")
    assert chip.count() == 1 and "notes.md" in chip.inner_text()


def test_an_oversize_file_is_refused_and_the_text_stays(page: Page) -> None:
    open_chat(page)
    page.fill("#input", "Please read this")
    pick(page, "huge.txt", "text/plain", b"a" * (200 * 1024 + 1))
    error = page.locator("#attach-error")
    error.wait_for()
    assert "huge.txt" in error.inner_text() and "200 KB" in error.inner_text()
    assert page.locator(".attach-chips .attach-chip").count() == 0
    assert page.input_value("#input") == "Please read this"
    # A file that fits can still be added, and removing it empties the box again.
    pick(page, "ok.txt", "text/plain", b"fine")
    chip = page.locator(".attach-chips .attach-chip")
    chip.wait_for()
    assert error.is_hidden()
    chip.locator(".attach-remove").click()
    assert page.locator(".attach-chips .attach-chip").count() == 0
    assert page.input_value("#input") == "Please read this"
