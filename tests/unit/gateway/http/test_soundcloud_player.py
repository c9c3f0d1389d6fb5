"""The SoundCloud drop-in over HTTP: /player/?url= pages, playlists, SoundCloud-shaped oEmbed.

In-process gateways (aiohttp's TestClient) over loopback upstreams: a small
site serving audio and M3U/PLS playlists, and the fake SoundCloud of
tests/support/fake_soundcloud.py. The browser side (the widget protocol) is in
tests/system/browser/test_soundcloud_widget.py.
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.media import MEDIA
from gateway.media.catalog import track_id_for
from gateway.sources.soundcloud import SiteEndpoints, SoundCloudSource
from tests.support.browser import serve_on_loopback
from tests.support.fake_soundcloud import (
    CLIENT_ID,
    LONG_SET_IDS,
    FakeSoundCloud,
    build_media,
)

PUBLIC = "http://gateway.test:8000"


class Site:
    """Audio files and playlists on loopback; ``hits`` counts playlist fetches."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = {name: p.read_bytes() for name, p in files.items()}
        self.playlists: dict[str, tuple[str, str]] = {}
        self.hits: dict[str, int] = {}
        self.base = ""

    async def audio(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.files:
            raise web.HTTPNotFound()
        return web.Response(body=self.files[name], content_type="audio/mpeg")

    async def playlist(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.playlists:
            raise web.HTTPNotFound()
        self.hits[name] = self.hits.get(name, 0) + 1
        text, ctype = self.playlists[name]
        return web.Response(text=text, content_type=ctype)


@pytest.fixture
async def site(upstream_files: dict[str, Path]) -> AsyncIterator[Site]:
    s = Site(upstream_files)
    app = web.Application()
    app.router.add_get("/audio/{name}", s.audio)
    app.router.add_get("/lists/{name}", s.playlist)
    runner, port = await serve_on_loopback(app)
    s.base = f"http://127.0.0.1:{port}"
    yield s
    await runner.cleanup()


@pytest.fixture
async def gw(make_config: Any, site: Site) -> AsyncIterator[TestClient]:
    host = urlsplit(site.base).netloc
    config = make_config(**{"server": {"public_url": PUBLIC}, "sources.url": {"allow_hosts": [host]}})
    client = TestClient(TestServer(create_app(config), host="127.0.0.1"))
    await client.start_server()
    yield client
    await client.close()


def player(url: str, **params: str) -> str:
    return "/player/?" + urlencode({"url": url, **params})


def page_data(text: str) -> dict[str, Any]:
    m = re.search(r'data-player="([^"]*)"', text)
    assert m is not None, text[:500]
    return json.loads(html.unescape(m.group(1)))  # type: ignore[no-any-return]


async def test_player_page_for_an_audio_url(gw: TestClient, site: Site) -> None:
    url = f"{site.base}/audio/song.mp3"
    r = await gw.get(player(url, color="00aa88", visual="true", unknown="x"))
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    text = await r.text()
    data = page_data(text)
    assert data["kind"] == "track" and len(data["tracks"]) == 1
    track = data["tracks"][0]
    assert track["id"] == track_id_for("url", url) and track["title"] == "song"
    assert track["src"] == f"{PUBLIC}/v1/tracks/{track['id']}"
    # discovery links, no inline script, a CSP
    assert '<link rel="alternate" type="application/json+oembed"' in text
    assert '<link rel="alternate" type="text/xml+oembed"' in text
    assert "<script>" not in text and "{{" not in text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors" not in csp
    # the same id as POST /v1/tracks gives
    posted = await (await gw.post("/v1/tracks", json={"url": url})).json()
    assert posted["id"] == track["id"]
    # /player (no slash) is the same page
    r2 = await gw.get("/player?" + urlencode({"url": url}))
    assert r2.status == 200 and page_data(await r2.text())["tracks"][0]["id"] == track["id"]


async def test_player_json_and_errors(gw: TestClient, site: Site) -> None:
    url = f"{site.base}/audio/song.mp3"
    r = await gw.get(player(url, format="json"))
    assert r.status == 200
    body = await r.json()
    assert body["kind"] == "track" and body["tracks"][0]["id"] == track_id_for("url", url)

    # a Ztream track URL, and a /player/ URL given as url
    tid = body["tracks"][0]["id"]
    for own in (f"{PUBLIC}/v1/tracks/{tid}", f"{PUBLIC}/embed/{tid}", f"{PUBLIC}/player/?url={quote(url, safe='')}"):
        r = await gw.get(player(own, format="json"))
        assert r.status == 200, own
        assert (await r.json())["tracks"][0]["id"] == tid

    # a host the configuration does not allow: a message inside the frame, JSON for format=json
    forbidden = "http://127.0.0.2:9/audio/song.mp3"
    r = await gw.get(player(forbidden))
    assert r.status == 403 and r.headers["content-type"].startswith("text/html")
    text = await r.text()
    assert "This gateway is not allowed to play this URL." in text
    assert page_data(text)["error"]["error"] == "host_not_allowed"
    r = await gw.get(player(forbidden, format="json"))
    assert r.status == 403 and (await r.json())["error"] == "host_not_allowed"

    cases = [
        (player("", format="json"), 400, "bad_request"),
        ("/player/?format=json", 400, "bad_request"),
        (player("ftp://example.org/a.mp3", format="json"), 400, "bad_url"),
        (player("x" * 5000, format="json"), 400, "bad_url"),
        (player(f"{PUBLIC}/v1/tracks/0000000000000000", format="json"), 404, "track_not_found"),
        (player(f"{PUBLIC}/player/?url=" + quote(f"{PUBLIC}/player/?url=x", safe=""), format="json"), 400, "bad_url"),
        # SoundCloud is not configured: its links are never fetched as pages
        (player("https://soundcloud.com/a/b", format="json"), 403, "soundcloud_disabled"),
        (player("https://soundcloud.com/a/sets/b", format="json"), 403, "soundcloud_disabled"),
    ]
    for path, status, code in cases:
        r = await gw.get(path)
        assert r.status == status, (path, await r.text())
        assert (await r.json())["error"] == code, path
    # never a blank frame
    r = await gw.get("/player/")
    assert r.status == 400 and "This is not a URL the player can play." in await r.text()


async def test_m3u_and_pls_playlists(gw: TestClient, site: Site) -> None:
    a, b = f"{site.base}/audio/song.mp3", f"{site.base}/audio/other.mp3"
    site.playlists["mix.m3u"] = (
        "#EXTM3U\n#EXTINF:12,Artist - First song\n/audio/song.mp3\n"
        "#EXTINF:-1,Not allowed\nhttp://127.0.0.2:9/x.mp3\nfile:///etc/passwd\n"
        f"#EXTINF:6,Second\n{b}\n",
        "audio/x-mpegurl",
    )
    site.playlists["mix.pls"] = (
        f"[playlist]\nNumberOfEntries=2\nFile2={b}\nTitle2=Two\nFile1={a}\nTitle1=One\nLength1=12\nVersion=2\n",
        "audio/x-scpls",
    )
    r = await gw.get(player(f"{site.base}/lists/mix.m3u", format="json"))
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["kind"] == "playlist" and body["title"] == "mix"
    assert [t["id"] for t in body["tracks"]] == [track_id_for("url", a), track_id_for("url", b)]
    assert [t["title"] for t in body["tracks"]] == ["Artist - First song", "Second"]
    # the page is cached for a minute: one fetch for many listeners
    for _ in range(3):
        assert (await gw.get(player(f"{site.base}/lists/mix.m3u"))).status == 200
    assert site.hits["mix.m3u"] == 1

    r = await gw.get(player(f"{site.base}/lists/mix.pls", format="json"))
    body = await r.json()
    assert [t["title"] for t in body["tracks"]] == ["One", "Two"]
    assert body["tracks"][0]["id"] == track_id_for("url", a)

    # not a playlist, a missing one, one with no usable entry
    site.playlists["page.m3u"] = ("<html>hi</html>", "text/html")
    site.playlists["empty.m3u"] = ("#EXTM3U\nfile:///x.mp3\n", "audio/x-mpegurl")
    site.playlists["hls.m3u"] = ("#EXTM3U\n#EXT-X-TARGETDURATION:2\nseg.ts\n", "audio/x-mpegurl")
    for name, status, code in (("page.m3u", 400, "playlist_bad"), ("empty.m3u", 400, "playlist_bad"),
                               ("hls.m3u", 400, "playlist_bad"), ("gone.m3u", 404, "upstream_not_found")):
        r = await gw.get(player(f"{site.base}/lists/{name}", format="json"))
        assert r.status == status, (name, await r.text())
        assert (await r.json())["error"] == code, name
    # every entry forbidden: the first entry's error
    site.playlists["bad.m3u"] = ("http://127.0.0.2:9/x.mp3\n", "audio/x-mpegurl")
    r = await gw.get(player(f"{site.base}/lists/bad.m3u", format="json"))
    assert r.status == 403 and (await r.json())["error"] == "host_not_allowed"
    # the playlist's own host obeys the policy too
    r = await gw.get(player("http://127.0.0.3:9/lists/mix.m3u", format="json"))
    assert r.status == 403 and (await r.json())["error"] == "host_not_allowed"


async def test_dropin_oembed_json_and_xml(gw: TestClient, site: Site) -> None:
    url = f"{site.base}/audio/song.mp3"
    page = f"{PUBLIC}/player/?url={quote(url, safe='')}&color=00aa88"
    r = await gw.get("/oembed?" + urlencode({"url": page, "format": "json", "auto_play": "true"}))
    assert r.status == 200, await r.text()
    assert r.headers["access-control-allow-origin"] == "*"
    data = await r.json()
    for key in ("version", "type", "provider_name", "provider_url", "height", "width", "title", "description",
                "thumbnail_url", "author_name", "author_url", "html"):
        assert key in data, key
    assert data["type"] == "rich" and data["version"] == "1.0"
    assert data["width"] == "100%" and data["height"] == 166 and data["title"] == "song"
    m = re.search(r'src="([^"]+)"', data["html"])
    assert m is not None and data["html"].startswith("<iframe")
    src = html.unescape(m.group(1))
    assert src.startswith(f"{PUBLIC}/player/?url=")
    q = parse_qs(urlsplit(src).query)
    assert q["url"] == [url] and q["color"] == ["00aa88"] and q["auto_play"] == ["true"]
    assert 'width="100%" height="166"' in data["html"]

    # maxwidth / maxheight; visual=true is 400 px tall unless the consumer allows less
    r = await gw.get("/oembed?" + urlencode({"url": page, "maxwidth": "320", "maxheight": "120"}))
    data = await r.json()
    assert (data["width"], data["height"]) == (320, 120) and 'width="320" height="120"' in data["html"]
    r = await gw.get("/oembed?" + urlencode({"url": page, "visual": "true", "maxheight": "5000"}))
    assert (await r.json())["height"] == 400

    # XML: the same fields
    r = await gw.get("/oembed?" + urlencode({"url": page, "format": "xml", "maxwidth": "500"}))
    assert r.status == 200 and r.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(await r.read())
    assert root.tag == "oembed"
    fields = {child.tag: child.text or "" for child in root}
    assert fields["type"] == "rich" and fields["width"] == "500" and fields["height"] == "166"
    assert fields["html"].startswith("<iframe") and "/player/?url=" in fields["html"]

    # a playlist is taller; errors are JSON
    site.playlists["two.m3u"] = (f"{url}\n{site.base}/audio/other.mp3\n", "audio/x-mpegurl")
    r = await gw.get("/oembed?" + urlencode({"url": f"{PUBLIC}/player/?url={site.base}/lists/two.m3u"}))
    assert (await r.json())["height"] == 450
    for query, status, code in (
        ({"url": page, "format": "yaml"}, 501, "format_not_implemented"),
        ({"url": page, "maxwidth": "wide"}, 400, "bad_request"),
        ({"url": f"{PUBLIC}/player/?url=http://127.0.0.2:9/a.mp3"}, 403, "host_not_allowed"),
        ({"url": "https://soundcloud.com/a/b", "format": "xml"}, 403, "soundcloud_disabled"),
    ):
        r = await gw.get("/oembed?" + urlencode(query))
        assert r.status == status, query
        assert (await r.json())["error"] == code, query


# -- with the fake SoundCloud -------------------------------------------------------------


@pytest.fixture(scope="module")
def sc_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_media(tmp_path_factory.mktemp("sc-media"))


@pytest.fixture
async def sc_gw(make_config: Any, sc_media: Path) -> AsyncIterator[tuple[TestClient, FakeSoundCloud]]:
    fake = FakeSoundCloud(sc_media)
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    fake.base = f"http://127.0.0.1:{server.port}"
    config = make_config(**{
        "server": {"public_url": PUBLIC},
        "sources.soundcloud": {"client_id": CLIENT_ID, "api_base": f"{fake.base}/v2", "auth_base": fake.base},
        "sources.url": {"allow_hosts": [f"127.0.0.1:{server.port}"]},
    })
    client = TestClient(TestServer(create_app(config), host="127.0.0.1"))
    await client.start_server()
    found = client.server.app[MEDIA].sources["soundcloud"]
    assert isinstance(found, SoundCloudSource)
    found.site = SiteEndpoints(page=f"{fake.base}/", assets=f"{fake.base}/assets/", short=f"{fake.base}/on/")
    yield client, fake
    await client.close()
    await server.close()


async def test_soundcloud_links_in_player_and_oembed(sc_gw: tuple[TestClient, FakeSoundCloud]) -> None:
    client, _ = sc_gw
    link = "https://soundcloud.com/artist-one/progressive-song"
    r = await client.get(player(link, format="json"))
    assert r.status == 200, await r.text()
    track = (await r.json())["tracks"][0]
    assert track["id"] == track_id_for("soundcloud", "tracks:101") and track["source"] == "soundcloud"
    # what SoundCloud's embed codes carry: the API URL, URL-encoded
    r = await client.get("/player/?url=" + quote("https://api.soundcloud.com/tracks/101", safe="") + "&format=json")
    assert r.status == 200 and (await r.json())["tracks"][0]["id"] == track["id"]

    r = await client.get("/oembed?" + urlencode({"url": link, "format": "json", "show_comments": "false"}))
    assert r.status == 200, await r.text()
    data = await r.json()
    assert data["title"] == track["title"] and data["author_name"] == track["artist"]
    assert data["author_url"] == "https://soundcloud.com/artist-one"
    assert data["thumbnail_url"] == track.get("artwork_url", track.get("artwork"))
    src = html.unescape(re.search(r'src="([^"]+)"', data["html"]).group(1))  # type: ignore[union-attr]
    assert parse_qs(urlsplit(src).query) == {"url": [link], "show_comments": ["false"]}
    # a set SoundCloud does not know: a clear error (sets themselves: the tests below)
    r = await client.get(player("https://soundcloud.com/artist-one/sets/a-set", format="json"))
    assert r.status == 404 and (await r.json())["error"] == "soundcloud_not_found"


async def test_soundcloud_set_in_player(sc_gw: tuple[TestClient, FakeSoundCloud]) -> None:
    client, fake = sc_gw
    link = "https://soundcloud.com/artist-one/sets/a-mix"
    # private 105, geo-blocked 106, not streamable 107, a repeated 101 and an unknown 999 are left out
    expected = [track_id_for("soundcloud", f"tracks:{n}") for n in (101, 102, 103, 104)]
    r = await client.get(player(link, format="json"))
    assert r.status == 200, await r.text()
    body = await r.json()
    assert (body["kind"], body["title"], body["permalink"]) == ("playlist", "A Mix", link)
    assert [t["id"] for t in body["tracks"]] == expected
    assert [t["title"] for t in body["tracks"]][:2] == ["Progressive Song", "HLS MP3 Song"]
    assert all(t["src"] == f"{PUBLIC}/v1/tracks/{t['id']}" for t in body["tracks"])
    # every track is in the catalog, as POST /v1/tracks would have put it
    for tid in expected:
        assert (await client.get(f"/v1/tracks/{tid}")).status == 200, tid
    # the page carries the same list; the resolved set is reused (one set request, one batch)
    r = await client.get(player(link, start_track="2"))
    assert r.status == 200 and [t["id"] for t in page_data(await r.text())["tracks"]] == expected
    assert fake.hits["v2/resolve"] == 1 and len(fake.batches) == 1
    # SoundCloud's embed codes carry the API URL
    api = "https://api.soundcloud.com/playlists/201"
    r = await client.get("/player/?url=" + quote(api, safe="") + "&format=json")
    assert r.status == 200 and [t["id"] for t in (await r.json())["tracks"]] == expected

    # a long set: every track, in order, though api-v2 sent most as bare ids
    r = await client.get(player("https://soundcloud.com/artist-two/sets/long-set", format="json"))
    body = await r.json()
    assert [t["id"] for t in body["tracks"]] == [track_id_for("soundcloud", f"tracks:{n}") for n in LONG_SET_IDS]

    for url, status, code in (("https://soundcloud.com/artist-three/sets/hidden-set", 404, "soundcloud_not_found"),
                              ("https://soundcloud.com/artist-three/sets/nothing-plays", 404, "soundcloud_not_found")):
        r = await client.get(player(url, format="json"))
        assert r.status == status and (await r.json())["error"] == code, url
    r = await client.get(player("https://soundcloud.com/artist-three/sets/hidden-set"))
    assert r.status == 404 and "This track was not found." in await r.text()


async def test_soundcloud_set_oembed(sc_gw: tuple[TestClient, FakeSoundCloud]) -> None:
    client, _ = sc_gw
    link = "https://soundcloud.com/artist-one/sets/a-mix"
    first = (await (await client.get(player(link, format="json"))).json())["tracks"][0]
    for url in (link, f"{PUBLIC}/player/?url={quote(link, safe='')}"):
        r = await client.get("/oembed?" + urlencode({"url": url, "format": "json", "color": "ff5500"}))
        assert r.status == 200, await r.text()
        data = await r.json()
        assert data["type"] == "rich" and data["height"] == 450 and data["width"] == "100%"
        assert data["title"] == "A Mix" and data["author_url"] == "https://soundcloud.com/artist-one"
        assert data["thumbnail_url"] == first.get("artwork_url", first.get("artwork"))  # the first track's
        assert 'height="450"' in data["html"] and 'title="A Mix"' in data["html"]
        src = html.unescape(re.search(r'src="([^"]+)"', data["html"]).group(1))  # type: ignore[union-attr]
        assert src.startswith(f"{PUBLIC}/player/?url=")
        assert parse_qs(urlsplit(src).query) == {"url": [link], "color": ["ff5500"]}
    r = await client.get("/oembed?" + urlencode({"url": link, "format": "xml", "maxheight": "300"}))
    fields = {child.tag: child.text or "" for child in ET.fromstring(await r.read())}
    assert fields["height"] == "300" and fields["title"] == "A Mix"
    r = await client.get("/oembed?" + urlencode({"url": link, "visual": "true"}))
    assert (await r.json())["height"] == 400
