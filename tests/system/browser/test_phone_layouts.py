"""The embed and landing pages on a phone-sized screen (Chromium, 320 px).

Everything fits the width (no sideways scrolling) and every control a
finger uses is a touch target of at least 44 x 44 CSS px (WCAG 2.5.5,
Apple's Human Interface Guidelines). /player/ has its own layout test in
test_soundcloud_widget.py.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from playwright.async_api import async_playwright

from tests.support.browser import ErrorLog, launch, require_chromium, until

pytestmark = [pytest.mark.timeout(90)]

TOUCH = 44


def first_id(gateway: Any) -> str:
    with urllib.request.urlopen(f"{gateway.url}/v1/tracks", timeout=10) as r:
        tracks = json.loads(r.read())["tracks"]
    return str(next(t["id"] for t in tracks if t["id"] in gateway.library_ids))


async def boxes(page: Any, script: str) -> list[dict[str, Any]]:
    """``script`` returns elements; their names and boxes."""
    result: list[dict[str, Any]] = await page.evaluate(
        f"""() => ({script}).map((el) => {{ const r = el.getBoundingClientRect();
              return {{name: (el.className || el.tagName) + ' ' + (el.getAttribute('aria-label') || el.textContent.trim()).slice(0, 30),
                      x: r.x, y: r.y, w: r.width, h: r.height}}; }})"""
    )
    return result


def assert_fits(found: list[dict[str, Any]], width: int) -> None:
    assert found
    for b in found:
        assert b["w"] >= TOUCH - 0.5 and b["h"] >= TOUCH - 0.5, b
        assert b["x"] >= 0 and b["x"] + b["w"] <= width + 0.5, b


async def test_embed_and_landing_at_320_px(gateway: Any) -> None:
    require_chromium()
    tid = first_id(gateway)
    log = ErrorLog()
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = log.watch(await browser.new_page(viewport={"width": 320, "height": 166}))
            await page.goto(f"{gateway.url}/embed/{tid}")
            await until(page, "document.getElementById('player').ready === true")
            controls = await boxes(
                page, "[...document.getElementById('player').shadowRoot.querySelectorAll('.play, .mute, .seek')]"
            )
            assert len(controls) == 3
            assert_fits(controls, 320)
            for b in controls:
                assert b["y"] >= 0 and b["y"] + b["h"] <= 166 + 0.5, b
            assert await page.evaluate("document.documentElement.scrollWidth") <= 320

            landing = log.watch(await browser.new_page(viewport={"width": 320, "height": 640}))
            await landing.goto(f"{gateway.url}/")
            await until(landing, "document.querySelectorAll('#tracks .p').length > 0")
            assert_fits(await boxes(landing, "[...document.querySelectorAll('#add-button, #url, #refresh, #tracks .p')]"), 320)
            assert await landing.evaluate("document.documentElement.scrollWidth") <= 320
            # a track chosen: the player and its controls fit too
            await landing.locator("#tracks .p").first.click()
            await until(landing, "document.getElementById('main-player').ready === true")
            assert_fits(
                await boxes(landing, "[...document.getElementById('main-player').shadowRoot.querySelectorAll('.play, .mute, .seek')]"),
                320,
            )
            assert await landing.evaluate("document.documentElement.scrollWidth") <= 320
        finally:
            await browser.close()
    log.assert_clean()
