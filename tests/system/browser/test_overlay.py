"""The neighbour overlay between real Chromium pages behind NATs (docs/wire.md "Overlay").

Three listeners, each behind its own NAT router, on the shipped defaults
(tests/system/browser/test_p2p.py builds the world): the third finds the seeder of
its next track through a neighbour's HOLDERS answer and the server's
``introduce``, before the tracker answers any ``want`` of that track.

- A seeds track 2; B plays track 2 too and meets A through the tracker, whose
  answer B keeps in its directory (who holds what, ``directoryTtl`` 30 s).
- B moves on to track 1 (closing its link to A, after telling A where it
  goes: A's directory learns B on track 1 from that departure notice); A
  stays on track 2.
- C plays a playlist of track 1 then track 2: the tracker names B, the only
  one on track 1. Near the end of track 1 C's player prefetches track 2 and
  asks B about it ahead (``lookupAhead``); B answers HOLDERS naming A. C
  never met A and never wanted track 2.
- C moves on to track 2: its first word to the server about track 2 is
  ``introduce`` A; the answer to it is the first ``peers`` of track 2 that
  C gets, and C dials A from it. A session's start waits for its
  introductions before it wants, so a ``want`` of track 2 comes, if ever,
  after A is a neighbour (when C's round finds the overlay exhausted, not
  even then). After its ~10 s server lead, C gets the rest of track 2 from A.

The control socket is recorded on C's page (every JSON message both ways, in
order) and the P2P cores are read (their directories of who holds what, and
from whom they learnt it); nothing of the client is changed.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from tests.support.browser import ErrorLog, until
from tests.support.world import (
    Browser,
    World,
    check_audio,
    manifest,
    p2p,
    play,
    seeded,
)

pytestmark = [pytest.mark.timeout(150)]

# The control socket, both ways, in order (C's page only). Registered in the
# constructor, before the agent sets its own handler, so it sees every message.
CONTROL_RECORDER = """
window.control = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (e) => {
      if (typeof e.data === "string") try { window.control.push({ dir: "in", msg: JSON.parse(e.data) }); } catch {}
    });
  }
  send(data) {
    if (typeof data === "string") try { window.control.push({ dir: "out", msg: JSON.parse(data) }); } catch {}
    return super.send(data);
  }
};
"""


# C's playlist moves on to its second track: from here on, track 2 only.
MARK_TRACK_2 = """
document.addEventListener("trackchange", (e) => {
  if (e.detail.index !== 1) return;
  window.mark = window.control.length;
  window.appended = [];
  window.chunks = [];
}, true);
"""


def two_tracks(gw: Any) -> tuple[str, str]:
    tracks = json.loads(gw.get("/v1/tracks"))["tracks"]
    by_title = {t["title"]: t["id"] for t in tracks}
    tones = sorted(title for title in by_title if title.startswith("tone"))
    assert len(tones) >= 2, by_title
    return by_title[tones[0]], by_title[tones[1]]


def known(track: str, rendition: str, peer: str) -> str:
    """JS: the source (a neighbour's id, or null: the tracker) the page's core learnt ``peer`` from, or undefined."""
    key = json.dumps(f"{track}/{rendition}")
    return f"document.getElementById('p').agent.core.directory.get({key})?.get({json.dumps(peer)})?.source"


def open_neighbour(peer: str) -> str:
    return f"(document.getElementById('p').p2p?.neighbours ?? []).some((n) => n.id === {json.dumps(peer)} && n.state === 'open')"


async def switch(page: Any, gw: Any, track: str) -> None:
    # a playing <ztream-player> whose src changes plays the new track (same agent, a new session)
    await page.evaluate(f"document.getElementById('p').setAttribute('src', {json.dumps(f'{gw.url}/v1/tracks/{track}')})")


async def test_third_listener_finds_its_seeder_through_a_neighbour(tmp_path: Path, audio_dir: Path) -> None:
    world = World(tmp_path, audio_dir, count=3)
    try:
        gw = world.gw
        t1, t2 = two_tracks(gw)
        m1, m2 = manifest(gw, t1), manifest(gw, t2)
        r2 = m2["rendition"]
        log = ErrorLog()
        loop = asyncio.get_running_loop()
        async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
            # A seeds track 2; B plays it too, meets A through the tracker and keeps A in its directory
            a = await b.listener(t2, home=0)
            await play(a)
            await seeded(a, m2)
            a_id = (await p2p(a))["peerId"]

            bee = await b.listener(t2, home=1)
            await play(bee)
            await until(bee, open_neighbour(a_id), timeout=20)
            b_id = (await p2p(bee))["peerId"]
            assert await bee.evaluate(f"{known(t2, r2, a_id)} === null"), "B did not learn A from the tracker"

            # B moves on to track 1 (A stays on track 2): it knows where A is, C will not
            await switch(bee, gw, t1)
            left_at = loop.time()
            await until(bee, f"(p => p.track === {json.dumps(t1)} && p.held >= 2)(document.getElementById('p').p2p)", timeout=15)
            # B's departure notice reached A before B's link closed: A learnt B on track 1 from B itself
            r1 = m1["rendition"]
            await until(a, f"{known(t1, r1, b_id)} === {json.dumps(b_id)}", timeout=5)
            noticed_after = loop.time() - left_at

            # C: a playlist of track 1, then track 2
            c = await b.listener(t1, home=2, script=CONTROL_RECORDER + MARK_TRACK_2, then=[t2])
            await play(c)
            await until(c, open_neighbour(b_id), timeout=20)
            assert not await c.evaluate(open_neighbour(a_id)), "C met A on track 1: A should have left it"

            # near the end of track 1 (the prefetch's 10 s lead) C's player asks B about
            # track 2; only B's answer to that LOOKUP can name A to C
            await until(c, f"{known(t2, r2, a_id)} === {json.dumps(b_id)}", timeout=25)
            learnt_after = loop.time() - left_at
            learnt_at = await c.evaluate("document.getElementById('p').currentTime")
            assert await c.evaluate("document.getElementById('p').index") == 0, "C learnt A only after it moved to track 2"
            up_before = (await p2p(a))["upBytes"]  # what A sent B before B left

            # the playlist moves on to track 2 by itself
            await until(c, "window.finished", timeout=45)
            mark = await c.evaluate("window.mark")
            recorded = await c.evaluate("window.control")
            earlier, control = recorded[:mark], recorded[mark:]
            chunks = await c.evaluate("window.chunks")
            stats = [await p.evaluate("document.getElementById('p').stats") for p in (a, bee, c)]
            up_after = (await p2p(a))["upBytes"]
            await check_audio(c, m2)

        about_t2 = [e for e in control if e["msg"].get("track") == t2]
        out = [(i, e["msg"]) for i, e in enumerate(about_t2) if e["dir"] == "out"]
        answers = [(i, e["msg"]) for i, e in enumerate(about_t2) if e["dir"] == "in" and e["msg"].get("type") == "peers"]
        first_out = next(msg for _, msg in out if msg["type"] in ("want", "introduce"))
        introduced_at = next(i for i, msg in answers if msg.get("for") == "introduce"
                             and a_id in [p["peer_id"] for p in msg["peers"]])
        want_answers = [(i, msg) for i, msg in answers if msg.get("for") != "introduce"]
        from_a = sum(ch["bytes"] for ch in chunks if ch["source"] == "peer" and ch["peer"] == a_id)
        from_others = [ch for ch in chunks if ch["source"] == "peer" and ch["peer"] != a_id]
        print(f"\noverlay: A had B's notice {noticed_after:.1f} s after B left track 2; B named A to C {learnt_after:.1f} s after it left "
              f"(C at {learnt_at:.1f} s of track 1); C's first track-2 request {first_out}; "
              f"answers {[(msg.get('for'), [p['peer_id'] for p in msg['peers']]) for _, msg in answers]}; "
              f"C got {from_a} bytes from A (A sent {up_after - up_before}); sources {[ch['source'] for ch in chunks]}; "
              f"stats {stats}")
        assert not any(e["msg"].get("track") == t2 and e["msg"].get("type") in ("want", "introduce") for e in earlier)
        # C knew A only from B, and asked the server to introduce it before any want
        assert first_out["type"] == "introduce" and first_out["peer_id"] == a_id, first_out
        # the introduction came before any want answer: A was dialled from it
        assert all(i > introduced_at for i, _ in want_answers), answers
        assert from_a > 0 and up_after - up_before >= from_a, (from_a, up_after - up_before)
        assert not from_others, from_others
        assert all(s["stalls"] == 0 for s in stats), stats
        log.assert_clean()
    finally:
        world.close()
