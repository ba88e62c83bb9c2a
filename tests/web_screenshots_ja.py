"""Take the Japanese interface's screenshots: a phone in Japanese, the conversation open
(a long pasted question collapsed) and the conversation list (a pinned one on top).

    .venv/bin/python -m tests.web_screenshots_ja

Starts its own gateway on the built-in simulated models (in a temporary data directory)
and writes docs/web-ja-phone.png and docs/web-ja-sidebar.png.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.servers import running
from tests.web_helpers import CHROMIUM_ARGS, ROOT, call, chat_turn, chromium, new_conversation

EARLIER = ["京都で週末を過ごす計画", "nginx の裏で SSE が止まる理由", "Rust のライフタイム入門"]
PASTE = "\n".join(
    f"2026-03-10 12:00:{i:02d} WARN stream stalled after {i * 40} ms" for i in range(40)
)


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        running(["serve", "--data-dir", tmp], Path(tmp), name="gateway") as gateway,
    ):
        fast = {"model": "sim-fast", "options": {"sim": {"length": 40}}}
        for question in EARLIER:
            chat_turn(gateway.url, {"message": question, **fast})
        listed = call(gateway.url + "/v1/conversations")["data"]
        pinned = next(c for c in listed if c["title"].startswith("京都"))
        call(f"{gateway.url}/v1/conversations/{pinned['id']}", "PATCH", {"pinned": True})
        chat = new_conversation(gateway.url, model="sim", options={"sim": {"length": 60}})
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            context = browser.new_context(
                base_url=gateway.url,
                locale="ja-JP",
                viewport={"width": 390, "height": 844},
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
                bypass_csp=True,
            )
            page = context.new_page()
            page.goto(f"/#/c/{chat['id']}")
            page.wait_for_function(f"() => window.sluice?.conversation?.id === {chat['id']!r}")
            page.fill("#input", f"このログを見て、原因を教えてください。\n{PASTE}")
            page.click("#send")  # on a touch screen Enter adds a line
            page.wait_for_function("() => !window.sluice.turn")
            page.wait_for_selector(".msg.assistant .metrics [data-metric=ttft]")
            page.locator("#input").blur()
            page.evaluate("document.querySelector('#scroller').scrollTop = 0")
            page.screenshot(path=str(ROOT / "docs" / "web-ja-phone.png"))
            page.click("#sidebar-toggle")
            page.wait_for_selector("#sidebar", state="visible")
            page.wait_for_timeout(400)  # the drawer's slide
            page.screenshot(path=str(ROOT / "docs" / "web-ja-sidebar.png"))
            browser.close()


if __name__ == "__main__":
    main()
