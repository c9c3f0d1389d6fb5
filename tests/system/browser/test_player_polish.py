"""The landing page's player and track list, in Chromium: what a visitor sees.

A library of two never-played tracks, one of them quiet and tagged: rows line
up with placeholders before anything is known, the playing row's button says
pause, the player shows artist and title apart (not the artist twice) and
takes the file's tags as soon as the first transcode has read them, and the
quiet track's waveform fills the seek bar (scaled as ``/player/`` scales it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.async_api import async_playwright

from tests.support.audio import ffmpeg_bin
from tests.support.browser import ErrorLog, launch, require_chromium, until

pytestmark = [pytest.mark.timeout(120)]


def make(path: Path, expr: str, seconds: float, *meta: str) -> None:
    tags = [arg for pair in (("-metadata", m) for m in meta) for arg in pair]
    subprocess.run(
        [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi",
         "-i", f"aevalsrc='{expr}|{expr}':s=44100:d={seconds}", *tags, "-c:a", "flac", str(path)],
        check=True, timeout=60,
    )


@pytest.fixture
def library(tmp_path: Path) -> Path:
    d = tmp_path / "library"
    d.mkdir()
    # Quiet: its peaks stay under 0.03 (-30 dBFS), with a shape.
    make(d / "quiet_one.flac", "0.03*sin(2*PI*220*t)*abs(sin(2*PI*t/8))", 8, "title=Song", "artist=Band")
    make(d / "another_tone.flac", "0.4*sin(2*PI*330*t)", 6)
    return d


SHADOW = "document.getElementById('main-player').shadowRoot"


async def test_landing_rows_player_title_and_quiet_waveform(gateway_factory: Any, library: Path) -> None:
    require_chromium()
    gw = gateway_factory(library)
    log = ErrorLog()
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = log.watch(await browser.new_page(viewport={"width": 900, "height": 900}))
            await page.goto(f"{gw.url}/")
            await until(page, "document.querySelectorAll('#tracks li').length === 2")
            rows = await page.evaluate("""() => [...document.querySelectorAll('#tracks li')].map((li) => ({
                id: li.dataset.id, thumb: li.querySelector('.thumb')?.textContent,
                thumbBg: li.querySelector('.thumb') ? getComputedStyle(li.querySelector('.thumb')).backgroundImage : '',
                titleX: li.querySelector('.t').getBoundingClientRect().left,
                d: li.querySelector('.d').textContent, state: li.querySelector('.p').dataset.state}))""")
            # Never played: a placeholder thumbnail (initials on a gradient) and a duration placeholder,
            # so the titles start at the same x in every row.
            assert all(r["thumb"] and "gradient" in r["thumbBg"] for r in rows), rows
            assert all(r["d"] == "–:––" for r in rows), rows
            assert len({round(r["titleX"]) for r in rows}) == 1, rows
            assert all(r["state"] == "paused" for r in rows)

            quiet = next(r["id"] for r in rows if r["thumb"] in ("QO", "BS"))
            await page.click(f"#tracks li[data-id='{quiet}'] .p")
            await until(page, f"!document.getElementById('main-player').paused && {SHADOW}.querySelector('.title').textContent !== ''")
            await until(page, f"document.querySelector(\"#tracks li[data-id='{quiet}'] .p\").dataset.state === 'playing'")
            label = await page.get_attribute(f"#tracks li[data-id='{quiet}'] .p", "aria-label")
            assert label is not None and label.startswith("Pause")
            assert await page.evaluate(f"document.querySelector(\"#tracks li[data-id='{quiet}'] .p svg path\").getAttribute('d')") \
                != await page.evaluate("document.querySelector(\"#tracks li:not([aria-current]) .p svg path\").getAttribute('d')")

            # The tags arrive with the end of the first transcode: shown without a reload, artist once.
            await until(page, f"{SHADOW}.querySelector('.artist').textContent === 'Band'")
            assert await page.evaluate(f"{SHADOW}.querySelector('.title').textContent") == "Song"
            await until(page, f"document.querySelector(\"#tracks li[data-id='{quiet}'] .t\").textContent === 'Band — Song'")

            # The quiet track's waveform fills the bar: its tallest bar is most of the canvas's height.
            await until(page, "document.getElementById('main-player').waveform?.complete === true")
            await page.wait_for_timeout(300)
            tallest = await page.evaluate(f"""() => {{ const c = {SHADOW}.querySelector('.wave');
                const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let best = 0;
                for (let x = 0; x < c.width; x++) {{ let ink = 0;
                  for (let y = 0; y < c.height; y++) ink += px[(y * c.width + x) * 4 + 3] > 0;
                  best = Math.max(best, ink); }}
                return best / c.height; }}""")
            assert tallest > 0.7, tallest

            # Pausing from the row: the button says play again.
            await page.click(f"#tracks li[data-id='{quiet}'] .p")
            await until(page, f"document.querySelector(\"#tracks li[data-id='{quiet}'] .p\").dataset.state === 'paused'")
            assert await page.evaluate("document.getElementById('main-player').paused") is True
        finally:
            await browser.close()
    log.assert_clean()


async def test_embed_opened_as_a_page_is_a_centred_player(gateway_factory: Any, library: Path) -> None:
    """The share link /embed/ID in a browser window: one card in the middle, not the frame's layout stretched."""
    require_chromium()
    gw = gateway_factory(library)
    tid = sorted(gw.library_ids)[0]
    log = ErrorLog()
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = log.watch(await browser.new_page(viewport={"width": 1200, "height": 800}))
            await page.goto(f"{gw.url}/embed/{tid}")
            await until(page, "document.getElementById('player').shadowRoot?.querySelector('.title')?.textContent")
            box = await page.evaluate("""() => { const r = document.getElementById('player').getBoundingClientRect();
                return {left: r.left, right: innerWidth - r.right, top: r.top, bottom: innerHeight - r.bottom, height: r.height}; }""")
            assert abs(box["left"] - box["right"]) < 2 and abs(box["top"] - box["bottom"]) < 2, box
            assert box["height"] < 300 and box["left"] > 100, box
        finally:
            await browser.close()
    log.assert_clean()


async def test_player_visual_background_is_the_tracks_gradient(gateway_factory: Any, library: Path) -> None:
    """/player/?visual=true of a track without a picture: the background is a gradient, not a flat square."""
    require_chromium()
    gw = gateway_factory(library)
    tid = sorted(gw.library_ids)[0]
    log = ErrorLog()
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = log.watch(await browser.new_page(viewport={"width": 800, "height": 400}))
            await page.goto(f"{gw.url}/player/?url={quote(f'{gw.url}/v1/tracks/{tid}', safe='')}&visual=true")
            await until(page, "(() => { const i = document.querySelector('.art'); return !i.hidden && i.complete && i.naturalWidth > 0; })()")
            spread = await page.evaluate("""() => { const i = document.querySelector('.art');
                const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
                const ctx = c.getContext('2d'); ctx.drawImage(i, 0, 0);
                const a = ctx.getImageData(5, 5, 1, 1).data, b = ctx.getImageData(c.width - 6, c.height - 6, 1, 1).data;
                return Math.abs(a[0] - b[0]) + Math.abs(a[1] - b[1]) + Math.abs(a[2] - b[2]); }""")
            assert spread > 40, spread
            assert await page.evaluate("getComputedStyle(document.querySelector('.art')).position") == "absolute"
        finally:
            await browser.close()
    log.assert_clean()
