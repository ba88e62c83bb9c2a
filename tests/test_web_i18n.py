"""The web page in Japanese and English, pinned conversations and long pastes, in
headless Chromium against the real gateway: a browser asking for Japanese gets the
Japanese interface (composer, buttons, sidebar groups, dates); the settings switch to
English at once and the choice outlives a reload; the phone layout in Japanese fits the
screen with 44 px targets; a pin moves a conversation to the top "Pinned" group and
stays after a reload; a long pasted question is shown collapsed and expands.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.faults import new_key
from tests.servers import ServerProcess
from tests.test_web import (  # noqa: F401 (fixtures: browser, desktop)
    ECHO,
    browser,
    desktop,
    new_page,
    open_chat,
    send,
    wait_idle,
    watched,
)
from tests.web_helpers import ROOT, call, chat_turn, conversation, new_conversation

PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}

# Every visible control smaller than 44 x 44 px (links inside a message's text are
# exempt, as WCAG 2.5.5 exempts inline links).
SMALL_TARGETS = """() => [...document.querySelectorAll(
        'button, a[href], select, input:not([type=hidden]), textarea, summary')]
    .filter((node) => {
        if (node.closest('.md')) return false;
        // A check box's target is its whole label.
        const target = node.matches('[type=checkbox], [type=radio]') && node.closest('label')
            || node;
        const box = target.getBoundingClientRect();
        const style = getComputedStyle(node);
        if (!box.width || !box.height || style.visibility === 'hidden') return false;
        if (node.closest('[hidden], dialog:not([open])')) return false;
        if (box.right <= 0 || box.left >= innerWidth) return false;  // off screen
        return box.width < 44 || box.height < 44;
    })
    .map((node) => `${node.tagName}.${node.className}#${node.id} ` +
        `${Math.round(node.getBoundingClientRect().width)}x` +
        `${Math.round(node.getBoundingClientRect().height)}`)"""


# What sticks out past the right edge of a 390 px screen (the leaves: their parents
# stick out only because of them).
TOO_WIDE = """() => [...document.querySelectorAll('body *')]
    .filter((node) => {
        const box = node.getBoundingClientRect();
        if (!box.width || box.right <= 390 + 0.5) return false;
        if (node.closest('[hidden], dialog:not([open]), .sprite')) return false;
        return ![...node.children].some((child) => child.getBoundingClientRect().right > 390.5);
    })
    .map((node) => `${node.tagName} in #${node.closest('[id]')?.id} ` +
        `right ${Math.round(node.getBoundingClientRect().right)}`)"""


def small_targets(page: Page) -> None:
    """Every control is a 44 x 44 px target at least."""
    small = page.evaluate(SMALL_TARGETS)
    assert small == [], small


def fits(page: Page) -> None:
    """Nothing wider than the phone's screen."""
    if page.evaluate("document.documentElement.scrollWidth") > 390:
        raise AssertionError(f"wider than the screen: {page.evaluate(TOO_WIDE)}")


@pytest.fixture
def page(desktop: BrowserContext) -> Iterator[Page]:  # noqa: F811
    """A tab of the module's (English) desktop browser, failing on any script error."""
    opened = watched(desktop.new_page())
    yield opened
    problems = opened.problems  # type: ignore[attr-defined]
    opened.close()
    assert problems == []


@pytest.fixture
def japanese(browser: Browser, gateway: ServerProcess) -> Iterator[Page]:  # noqa: F811
    """A page in a browser of its own whose language is Japanese."""
    opened = new_page(browser, gateway, locale="ja-JP")
    yield opened
    problems = opened.problems  # type: ignore[attr-defined]
    opened.context.close()
    assert problems == []


def placeholder(page: Page) -> str | None:
    return page.locator("#input").get_attribute("placeholder")


def group_label(page: Page, conversation_id: str) -> str:
    """The label of the sidebar group a conversation is listed under."""
    found: str = page.evaluate(
        """(id) => {
            let li = document.querySelector(`#conversations li[data-id="${id}"]`);
            while (li && !li.dataset.group) li = li.previousElementSibling;
            return li ? li.querySelector('.conversation-group').textContent : '';
        }""",
        conversation_id,
    )
    return found


def choose_language(page: Page, value: str) -> None:
    page.click("#settings-button")
    page.select_option("#language", value)
    page.click("#settings-dialog button[value=cancel]")


# --- Japanese and English ------------------------------------------------------------------


def test_japanese_browser_gets_the_japanese_interface_and_can_switch(
    japanese: Page, gateway: ServerProcess
) -> None:
    page = japanese
    chat = new_conversation(gateway.url, title=f"翻訳テスト {new_key()}", model="sim", options=ECHO)
    chat_turn(gateway.url, {"conversation_id": chat["id"], "message": "こんにちは"})
    open_chat(page, chat["id"])
    assert page.evaluate("navigator.languages[0]").startswith("ja")
    assert page.evaluate("document.documentElement.lang") == "ja"
    assert placeholder(page) == "メッセージを入力…"
    assert page.locator("#new-chat").inner_text() == "新しいチャット"
    assert page.locator("#send").get_attribute("aria-label") == "送信（Enter）"
    assert page.locator("#search").get_attribute("placeholder") == "会話を検索"
    assert page.locator("#theme-button").inner_text() == "テーマ：システム設定"
    page.wait_for_selector(f"#conversations li[data-id='{chat['id']}']")
    assert group_label(page, chat["id"]) == "今日"
    item = page.locator(f"#conversations li[data-id='{chat['id']}']")
    assert (
        item.locator("button.rename").get_attribute("aria-label")
        == f"「{chat['title']}」の名前を変更"
    )
    # A date in the tooltip, in Japanese (Intl): "…年…月…日" and "…前" or "今".
    tooltip = item.locator("a").get_attribute("title") or ""
    assert "年" in tooltip and "月" in tooltip, tooltip
    answer = page.locator(".msg.assistant").last
    answer.wait_for()
    assert answer.locator("button.copy").get_attribute("aria-label") == "回答をコピー"
    assert page.locator(".msg.user h3").first.text_content() == "あなたの発言："
    page.click("#help-button")
    assert page.locator("#help-table").inner_text().count("新しいチャット") == 1
    page.keyboard.press("Escape")

    # The settings switch to English: at once, the messages' buttons too.
    choose_language(page, "en")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert placeholder(page) == "Message…"
    assert page.locator("#new-chat").inner_text() == "New chat"
    page.wait_for_function(
        f"""() => {{
            let li = document.querySelector('#conversations li[data-id="{chat["id"]}"]');
            while (li && !li.dataset.group) li = li.previousElementSibling;
            return li?.querySelector('.conversation-group').textContent === 'Today';
        }}"""
    )
    page.wait_for_function(
        "() => document.querySelector('.msg.assistant button.copy')"
        "?.getAttribute('aria-label') === 'Copy answer'"
    )
    assert page.evaluate("localStorage.getItem('sluice.language')") == "en"

    # Kept across a reload, though the browser still prefers Japanese.
    page.reload()
    page.wait_for_function("() => window.sluice !== undefined")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert placeholder(page) == "Message…"
    assert page.locator(".welcome-title").text_content() == "What can I help with?"
    page.click("#settings-button")
    assert page.locator("#language").input_value() == "en"
    page.click("#settings-dialog button[value=cancel]")

    # Back to the browser's language.
    choose_language(page, "")
    assert page.evaluate("document.documentElement.lang") == "ja"
    assert placeholder(page) == "メッセージを入力…"
    assert page.evaluate("localStorage.getItem('sluice.language')") is None


def test_english_browser_can_choose_japanese(page: Page, gateway: ServerProcess) -> None:
    open_chat(page)
    assert page.evaluate("document.documentElement.lang") == "en"
    assert placeholder(page) == "Message…"
    try:
        choose_language(page, "ja")
        assert placeholder(page) == "メッセージを入力…"
        assert (
            page.locator(".welcome-title").text_content() == "何かお手伝いできることはありますか？"
        )
        # The welcome text keeps its keys as <kbd>, placed in the Japanese sentence.
        welcome = page.locator(".welcome p").nth(1)
        assert welcome.locator("kbd").count() == 4
        assert welcome.inner_text().startswith("回答は書かれたそばから表示されます。Enter で送信")
        page.reload()
        page.wait_for_function("() => window.sluice !== undefined")
        assert page.evaluate("document.documentElement.lang") == "ja"
        assert page.locator("#new-chat").inner_text() == "新しいチャット"
    finally:
        page.evaluate("localStorage.removeItem('sluice.language')")


def test_phone_layout_in_japanese(browser: Browser, gateway: ServerProcess) -> None:  # noqa: F811
    page = new_page(browser, gateway, locale="ja-JP", **PHONE)
    try:
        chat = new_conversation(gateway.url, model="sim", options=ECHO)
        open_chat(page, chat["id"])
        send(page, "スマートフォンでの表示を確認します。" * 4)
        wait_idle(page)
        assert page.evaluate("document.documentElement.lang") == "ja"
        assert placeholder(page) == "メッセージを入力…"
        fits(page)
        small_targets(page)
        # The conversation list, open over the page.
        page.click("#sidebar-toggle")
        page.wait_for_selector("#sidebar", state="visible")
        page.wait_for_timeout(300)  # the drawer's slide
        small_targets(page)
        fits(page)
        item = page.locator(f"#conversations li[data-id='{chat['id']}']")
        for button in ("pin", "rename", "delete"):
            box = item.locator(f"button.{button}").bounding_box()
            assert box is not None and box["x"] + box["width"] <= 390, button
        page.keyboard.press("Escape")
        page.wait_for_selector("#sidebar", state="hidden")
        # The settings, with the language switch, fit too.
        page.click("#settings-button")
        page.wait_for_selector("#language")
        small_targets(page)
        fits(page)
        box = page.locator("#language").bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390
        assert page.problems == []  # type: ignore[attr-defined]
    finally:
        page.context.close()


# --- pinned conversations ------------------------------------------------------------------


def first_ids(page: Page, count: int) -> list[str]:
    ids: list[str] = page.evaluate(
        f"() => [...document.querySelectorAll('#conversations li')].slice(0, {count})"
        ".map((li) => li.dataset.id)"
    )
    return ids


def test_pin_moves_a_conversation_to_the_pinned_group(page: Page, gateway: ServerProcess) -> None:
    tag = new_key()
    older = new_conversation(gateway.url, title=f"Older {tag}", model="sim")
    time.sleep(0.01)
    newer = new_conversation(gateway.url, title=f"Newer {tag}", model="sim")
    open_chat(page)
    row = f"#conversations li[data-id='{older['id']}']"
    page.wait_for_selector(row)
    assert first_ids(page, 2) == [newer["id"], older["id"]]
    pin = page.locator(f"{row} button.pin")
    assert pin.get_attribute("aria-pressed") == "false"
    assert pin.get_attribute("aria-label") == f"Pin “Older {tag}”"
    try:
        page.locator(row).hover()
        pin.click()
        page.wait_for_function(
            f"() => document.querySelector('#conversations li')?.dataset.id === {older['id']!r}"
        )
        assert page.locator(f"{row} button.pin").get_attribute("aria-pressed") == "true"
        assert group_label(page, older["id"]) == "Pinned"
        assert group_label(page, newer["id"]) == "Today"
        assert conversation(gateway.url, older["id"])["pinned"] is True

        page.reload()
        page.wait_for_function("() => window.sluice !== undefined")
        page.wait_for_selector(row)
        assert first_ids(page, 2) == [older["id"], newer["id"]]
        assert group_label(page, older["id"]) == "Pinned"

        # Unpinned: back among the others, by date.
        page.locator(row).hover()
        page.locator(f"{row} button.pin").click()
        page.wait_for_function(
            f"() => document.querySelector('#conversations li')?.dataset.id === {newer['id']!r}"
        )
        assert group_label(page, older["id"]) == "Today"
        assert conversation(gateway.url, older["id"])["pinned"] is False
    finally:
        call(f"{gateway.url}/v1/conversations/{older['id']}", "PATCH", {"pinned": False})


# --- long pastes ---------------------------------------------------------------------------


def test_a_long_paste_is_collapsed_and_expands(page: Page, gateway: ServerProcess) -> None:
    chat = new_conversation(gateway.url, model="sim", options=ECHO)
    open_chat(page, chat["id"])
    send(page, "A short question")
    wait_idle(page)
    short = page.locator(".msg.user").last
    assert short.locator("button.fold").is_hidden()

    pasted = "\n".join(f"line {i}: some pasted log output" for i in range(60))
    page.fill("#input", pasted)
    page.press("#input", "Enter")
    wait_idle(page)
    question = page.locator(".msg.user").last
    bubble = question.locator(".bubble")
    fold = question.locator("button.fold")
    assert "collapsed" in (bubble.get_attribute("class") or "")
    sizes = bubble.evaluate("(b) => [b.clientHeight, b.scrollHeight]")
    assert sizes[0] < sizes[1] / 2, sizes
    assert fold.inner_text() == "Show more"
    assert fold.get_attribute("aria-expanded") == "false"
    assert fold.get_attribute("aria-controls") == bubble.get_attribute("id")
    box = fold.bounding_box()
    assert box is not None and box["height"] >= 44 and box["width"] >= 44
    # The whole text is there (copy, edit), only drawn shorter.
    assert bubble.text_content() == pasted

    # By keyboard: Tab reaches it, Enter expands it, Space collapses it again.
    question.locator("button.copy").focus()
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.classList.contains('fold')")
    page.keyboard.press("Enter")
    assert fold.get_attribute("aria-expanded") == "true"
    assert fold.inner_text() == "Show less"
    sizes = bubble.evaluate("(b) => [b.clientHeight, b.scrollHeight]")
    assert sizes[0] == sizes[1], sizes
    page.keyboard.press("Space")
    assert fold.get_attribute("aria-expanded") == "false"

    # Read again from the server (a reload): collapsed again.
    page.reload()
    page.wait_for_function(f"() => window.sluice.conversation?.id === {chat['id']!r}")
    stored = page.locator(".msg.user").last
    stored.locator("button.fold").wait_for()
    assert "collapsed" in (stored.locator(".bubble").get_attribute("class") or "")
    assert stored.locator("button.fold").inner_text() == "Show more"


def test_japanese_that_opens_with_kanji_is_marked_japanese(
    page: Page,
    gateway: ServerProcess,
) -> None:
    open_chat(page)
    marks = page.evaluate(
        """async () => {
            const { AnswerView } = await import('/static/js/answer.js');
            const mark = (chunks, final) => {
                const view = new AnswerView({ hooks: {} });
                let text = '';
                for (const chunk of chunks) view.markScript(text += chunk);
                if (final) view.markScript(text, true);
                return view.body.lang;
            };
            return [
                mark(['Sure. ', '焦', 'らず進めましょう。']),  // kanji first, then kana
                mark(['我们', '应该']),  // Han only, still streaming: not decided yet
                mark(['我们', '应该'], true),  // ...and at the end: Chinese
                mark(['这是一个很长的中文句子，', '没有任何假名。'.repeat(6)]),  // 50 Han
                mark(['안녕하세요']),
                mark(['Plain English'], true),
            ];
        }"""
    )
    assert marks == ["ja", "", "zh", "zh", "ko", ""]


def test_every_key_has_both_languages(page: Page, gateway: ServerProcess) -> None:
    """Every key the page uses is in the catalogue, in English and in Japanese, and the
    two take the same parameters."""
    open_chat(page)
    catalogue: dict[str, dict[str, str]] = page.evaluate(
        """async () => {
            const { en, ja } = await import('/static/js/i18n.js');
            return { en, ja };
        }"""
    )
    en, ja = catalogue["en"], catalogue["ja"]
    assert en.keys() == ja.keys()
    params = re.compile(r"\{(\w+)\}")
    for key in en:
        assert en[key] and ja[key], key
        assert set(params.findall(en[key])) == set(params.findall(ja[key])), key
    static = ROOT / "src" / "sluice" / "http" / "static"
    used: set[str] = set()
    for path in [static / "index.html", static / "share.html"]:
        html = path.read_text(encoding="utf-8") if path.exists() else ""
        used |= set(re.findall(r'data-i18n="([\w.]+)"', html))
        for pairs in re.findall(r'data-i18n-attr="([^"]+)"', html):
            used |= {pair.split("=")[1].strip() for pair in pairs.split(";")}
    # In code: every string that looks like a key of one of the catalogue's namespaces
    # ("answer.copy", also when chosen as in t(on ? "a.b" : "a.c")).
    namespaces = {key.split(".")[0] for key in en}
    for path in (static / "js").glob("*.js"):
        if path.name == "i18n.js":
            continue
        code = path.read_text(encoding="utf-8")
        found = re.findall(r"""["']([a-z]+\.[a-z][A-Za-z]+)["']""", code)
        used |= {key for key in found if key.split(".")[0] in namespaces}
    assert len(used) > 100
    assert sorted(used - en.keys()) == []
