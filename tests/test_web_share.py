"""Share links from the web page, in headless Chromium against a gateway that wants a key:
the owner makes a link from the conversation's header, copies it, and a reader in a
browser of their own — no key, no cookie, the page's Content-Security-Policy enforced —
sees the conversation drawn by the same markdown renderer, read-only. Revoked, the link
shows "not found" on the next load."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page

from tests.servers import ServerProcess, base_env, running
from tests.test_web import RICH, RICH_PROMPT, browser, new_page  # noqa: F401 (fixture)

MASTER = "sk-master-" + "h" * 24


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory, gateway_config: Path
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("web-share")
    env = base_env(SLUICE_MASTER_KEY=MASTER, SLUICE_DATA_DIR=str(tmp / "data"))
    with running(["serve", "--config", str(gateway_config)], tmp, name="share", env=env) as s:
        yield s


def call(server: ServerProcess, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        server.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {MASTER}"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        raw = response.read()
        return json.loads(raw) if raw.startswith(b"{") else raw.decode()


def rich_conversation(server: ServerProcess) -> dict[str, Any]:
    """A conversation whose answer has a heading, a code block, a table and links, and a
    system prompt no reader may see."""
    chat = call(
        server,
        "POST",
        "/v1/conversations",
        {"title": "Caching", "model": "sim", "options": RICH, "system_prompt": "PRIVATE-42"},
    )
    call(server, "POST", "/chat", {"conversation_id": chat["id"], "message": RICH_PROMPT})
    conversation: dict[str, Any] = call(server, "GET", f"/v1/conversations/{chat['id']}")
    assert conversation["messages"][-1]["status"] == "complete"
    return conversation


def reader(browser: Browser, url: str, **options: Any) -> tuple[Page, list[str]]:  # noqa: F811
    """A tab in a browser of its own: no key, no cookie, and the CSP enforced (no
    bypass), so any script or style the policy would block shows up as an error."""
    context = browser.new_context(**{"viewport": {"width": 1000, "height": 800}, **options})
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def console(message: ConsoleMessage) -> None:
        # The one expected error: the browser logging the 404 of a revoked link's read.
        if message.type == "error" and "404" not in message.text:
            problems.append(f"console: {message.text}")

    page.on("console", console)
    page.goto(url)
    return page, problems


def test_share_from_the_page_read_elsewhere_then_revoke(
    browser: Browser,  # noqa: F811
    secured: ServerProcess,
) -> None:
    conversation = rich_conversation(secured)
    assert "**" in conversation["messages"][-1]["content"]  # markdown to draw
    owner = new_page(browser, secured)
    try:
        owner.goto(f"/#/c/{conversation['id']}")
        owner.wait_for_selector("#key-dialog[open]")
        owner.fill("#api-key", MASTER)
        owner.press("#api-key", "Enter")
        owner.wait_for_function(f"() => window.sluice?.conversation?.id === {conversation['id']!r}")

        # Share: the header's button opens the dialog; Create shows the link once.
        owner.click("#share-button")
        dialog = owner.locator("#share-dialog")
        dialog.locator(".share-none").wait_for()
        dialog.locator(".share-create").click()
        dialog.locator(".share-new").wait_for()
        url = dialog.locator("#share-url").input_value()
        assert url.startswith(f"{secured.url}/share/")
        dialog.locator(".share-copy").click()
        owner.wait_for_function(
            "async (url) => (await navigator.clipboard.readText()) === url", arg=url
        )
        assert dialog.locator(".share-item").count() == 1
        assert dialog.locator(".share-none").is_hidden()

        # A reader with nothing but the link.
        page, problems = reader(browser, url)
        try:
            page.wait_for_selector("body[data-state=ready]")
            assert page.context.cookies() == []
            assert page.locator("#shared-title").inner_text() == "Caching"
            assert page.locator(".msg.user").count() == 1
            assert page.locator(".msg.user .bubble").inner_text() == RICH_PROMPT
            body = page.locator(".msg.assistant .msg-body")
            assert body.count() == 1
            # Drawn as the chat page draws it: markdown, highlighted code, a table.
            assert body.locator(".code-block").count() >= 1
            assert body.locator("table").count() >= 1
            assert body.locator("h1, h2, h3").count() >= 1
            assert body.locator("strong").count() >= 1 and "**" not in body.inner_text()
            # The same text the owner's page shows for the answer.
            assert body.inner_text() == owner.locator(".msg.assistant .msg-body").inner_text()
            assert page.locator(".msg.assistant .model-name").inner_text() == "sim"
            # Read-only, and nothing private: no composer, no sidebar, no sign-in, no
            # system prompt.
            for absent in ("#input", "#composer", "#sidebar", "#key-dialog", "button.regenerate"):
                assert page.locator(absent).count() == 0, absent
            assert "PRIVATE-42" not in page.content()
            assert problems == []

            # A reader whose browser prefers Japanese gets the page's words in Japanese.
            japanese, ja_problems = reader(browser, url, locale="ja-JP")
            try:
                japanese.wait_for_selector("body[data-state=ready]")
                assert japanese.locator(".shared-note").inner_text() == "共有された会話・閲覧専用"
                assert japanese.locator(".msg.assistant").count() == 1
                assert ja_problems == []
            finally:
                japanese.context.close()

            # The owner revokes it from the same dialog.
            dialog.locator(".share-revoke").click()
            dialog.locator(".share-none").wait_for()
            assert dialog.locator(".share-new").is_hidden()
            assert owner.locator("#share-url").input_value() == ""

            page.reload()
            page.wait_for_selector("body[data-state=ready]")
            page.locator("#shared-missing").wait_for()
            assert "does not work" in page.locator("#shared-missing").inner_text()
            assert page.locator(".msg").count() == 0
            assert problems == []
        finally:
            page.context.close()
        assert owner.problems == []  # type: ignore[attr-defined]
    finally:
        owner.context.close()


def sign_in(page: Page, path: str = "/") -> None:
    page.goto(path)
    page.wait_for_selector("#key-dialog[open]")
    page.fill("#api-key", MASTER)
    page.press("#api-key", "Enter")
    page.wait_for_selector("#key-dialog", state="hidden")
    page.wait_for_function("() => window.sluice !== undefined")


def test_no_share_for_a_new_chat_and_from_the_menu_on_a_phone(
    browser: Browser,  # noqa: F811
    secured: ServerProcess,
) -> None:
    conversation = rich_conversation(secured)
    page = new_page(browser, secured)
    try:
        sign_in(page)
        assert page.locator("#share-button").is_hidden()  # nothing to share yet
        page.goto(f"/#/c/{conversation['id']}")
        page.wait_for_function(f"() => window.sluice?.conversation?.id === {conversation['id']!r}")
        assert page.locator("#share-button").is_visible()
    finally:
        page.context.close()

    phone = new_page(browser, secured, viewport={"width": 360, "height": 740}, has_touch=True)
    try:
        sign_in(phone, f"/#/c/{conversation['id']}")
        phone.wait_for_function(f"() => window.sluice?.conversation?.id === {conversation['id']!r}")
        # No room in a phone's top bar for one more button: Share is in the menu.
        assert phone.locator("#share-button").is_hidden()
        phone.click("#export-button")
        phone.click("#export-menu .menu-share")
        assert phone.locator("#export-menu").is_hidden()
        dialog = phone.locator("#share-dialog")
        dialog.locator(".share-create").click()
        dialog.locator(".share-new").wait_for()
        assert "/share/" in dialog.locator("#share-url").input_value()
        box = dialog.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
        assert phone.problems == []  # type: ignore[attr-defined]
    finally:
        phone.context.close()
