"""Errors that a configuration key would fix name that key: in JSON (``setting``
and the detail) and on the pages that show them (``/player/``)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from gateway.errors import SETTINGS, Overloaded, TooLarge, ZtreamError
from tests.support.gateway import post_url


async def test_a_loopback_url_names_allow_hosts(make_gateway: Any, upstream: Any) -> None:
    client = await make_gateway()
    r = await post_url(client, f"{upstream.base}/audio/song.mp3")
    body = await r.json()
    assert r.status == 403 and body["error"] == "upstream_forbidden", body
    assert body["setting"] == "sources.url.allow_hosts" and "sources.url.allow_hosts" in body["detail"]
    assert set(body) == {"error", "detail", "setting"}


async def test_a_host_off_the_list_names_allow_hosts(make_gateway: Any, upstream: Any) -> None:
    client = await make_gateway(**{"sources.url": {"allow_hosts": ["media.example.org"]}})
    body = await (await post_url(client, f"{upstream.base}/audio/song.mp3")).json()
    assert body["error"] == "host_not_allowed" and body["setting"] == "sources.url.allow_hosts", body
    assert "sources.url.allow_hosts" in body["detail"]


async def test_soundcloud_without_credentials_names_client_id(make_gateway: Any) -> None:
    client = await make_gateway()
    r = await post_url(client, "https://soundcloud.com/artist/a-track")
    body = await r.json()
    assert r.status == 403 and body["error"] == "soundcloud_disabled", body
    assert body["setting"] == "sources.soundcloud.client_id" and "sources.soundcloud.client_id" in body["detail"]


async def test_errors_no_setting_fixes_have_none(make_gateway: Any) -> None:
    client = await make_gateway()
    body = await (await client.get("/v1/tracks/0123456789abcdef/manifest")).json()
    assert body["error"] == "track_not_found" and "setting" not in body, body
    assert "setting" not in ZtreamError("x").to_json()


def message(page: str) -> str:
    """The server-rendered message of the /player/ page (what the listener reads)."""
    found = re.search(r'<p class="message" role="alert">(.*?)</p>', page, re.S)
    assert found is not None, page[:3000]
    return found.group(1)


async def test_the_player_page_shows_the_key_like_the_json(make_gateway: Any, upstream: Any) -> None:
    client = await make_gateway()
    r = await client.get("/player/?url=" + quote("https://soundcloud.com/artist/a-track", safe=""))
    page = await r.text()
    assert r.status == 403 and "sources.soundcloud.client_id" in message(page), message(page)
    r = await client.get("/player/?url=" + quote(f"{upstream.base}/audio/song.mp3", safe=""))
    page = await r.text()
    assert r.status == 403 and "sources.url.allow_hosts" in message(page), message(page)


def test_every_mapped_code_names_its_key_in_the_detail() -> None:
    for code, key in SETTINGS.items():
        error = ZtreamError("it failed", code=code)
        assert error.to_json() == {"error": code, "detail": f"it failed (setting: {key})", "setting": key}
    assert "setting" not in Overloaded("busy").to_json()  # load, not a key, makes it
    too_large = TooLarge("the file is over 10 bytes", setting="sources.url.max_bytes").to_json()
    assert too_large["setting"] == "sources.url.max_bytes"
