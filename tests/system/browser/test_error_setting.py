"""The embed page (``<ztream-player>`` in Chromium) names the key that would
fix an error, as the JSON answer does."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from playwright.async_api import async_playwright

from tests.support.browser import launch

pytestmark = [pytest.mark.timeout(120)]

TOKEN = "admin-token-error-fix"


def call(method: str, url: str, body: Any = None) -> Any:
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=15) as r:
        return json.load(r)


async def test_the_embed_player_names_the_setting(gateway_factory: Any) -> None:
    gw = gateway_factory(admin={"token": TOKEN})
    track_id = gw.library_ids[0]
    # The library directory is removed through the admin API: its tracks stop
    # serving (403 path_forbidden), which sources.local.dirs would fix.
    assert call("PUT", f"{gw.url}/v1/admin/sources", {"local": {"dirs": []}})["changed"] == ["sources.local.dirs"]
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            page = await browser.new_page()
            await page.goto(f"{gw.url}/embed/{track_id}")
            await page.locator("ztream-player button.play").click()
            status = page.locator("ztream-player .status")
            await status.filter(has_text="sources.local.dirs").wait_for(timeout=30_000)
            text = await status.text_content()
            assert text is not None and text.startswith("Cannot play this track:"), text
        finally:
            await browser.close()
