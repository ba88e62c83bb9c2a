"""Take the README's screenshots of the chat page, light and dark.

    .venv/bin/python -m tests.web_screenshots

Starts its own gateway on the built-in simulated models (in a temporary data directory),
streams an answer with a code block and a table in Debian's Chromium, and writes
docs/web-light.png and docs/web-dark.png.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.servers import running
from tests.web_helpers import CHROMIUM_ARGS, ROOT, chat_turn, chromium, new_conversation

PROMPT = "Compare caching strategies for a Python web service"
OPTIONS = {"seed": 29, "sim": {"length": 320, "tokens_per_second": 150}}
EARLIER = [
    "Plan a weekend in Kyoto",
    "Why does my SSE stream stall behind nginx?",
    "Rust lifetimes, explained simply",
    "Index tuning for a slow PostgreSQL query",
]


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        running(["serve", "--data-dir", tmp], Path(tmp), name="gateway") as gateway,
    ):
        for question in EARLIER:
            chat_turn(
                gateway.url,
                {"message": question, "model": "sim-fast", "options": {"sim": {"length": 40}}},
            )
        chat = new_conversation(gateway.url, model="sim", options=OPTIONS)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            context = browser.new_context(
                base_url=gateway.url,
                viewport={"width": 1280, "height": 1040},
                device_scale_factor=1,
                bypass_csp=True,
            )
            page = context.new_page()
            page.goto(f"/#/c/{chat['id']}")
            page.wait_for_function(f"() => window.sluice?.conversation?.id === {chat['id']!r}")
            page.fill("#input", PROMPT)
            page.press("#input", "Enter")
            page.wait_for_function("() => !window.sluice.turn")
            page.wait_for_selector(".msg.assistant .metrics [data-metric=ttft]")
            page.wait_for_function(
                "() => document.querySelectorAll('#conversations li').length === 5"
            )
            page.locator("#input").blur()
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                path = ROOT / "docs" / f"web-{scheme}.png"
                page.screenshot(path=str(path))
                print(f"wrote {path.relative_to(ROOT)}")
            browser.close()


if __name__ == "__main__":
    main()
