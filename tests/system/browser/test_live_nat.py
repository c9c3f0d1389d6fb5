"""A live station heard by real Chromium and Firefox listeners, each behind its own NAT router.

The world of the browser P2P tests (``bench.world.World``, the ``bridge``
topology, the gateway's shipped defaults: its built-in STUN responder, no
TURN, no media permissions) with a live station on the public side: a real
Icecast on the public namespace's loopback fed in real time by ``ffmpeg -re``
(MP3), registered with the gateway as a live track (docs/live.md). Three
listeners (two Chromium, then a Firefox ESR) join about 4 s apart and each
listens ~25 s (``bench.world.listen_live``,
what ``ztream bench browsers --live`` runs). Each starts near the edge of the
window it joined (not at the window's start), plays without a stall about
3 s behind the upstream, and the later listeners get a real share of the
chunks past their start-up lead from peers (docs/p2p.md, "Live: peers carry
the edge").
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from tests.support.browser import ErrorLog
from tests.support.world import (
    LIVE_LEAD,
    LIVE_OVERRIDES,
    Browser,
    World,
    buffered_ahead,
    listen_live,
    live_station,
    live_window,
    metric_sum,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

LISTENERS = 3
FIREFOX_AT = 2  # the last listener is a Firefox: both engines take the edge from each other
STAGGER = 4.0  # seconds between two listeners' starts
LISTEN = 25.0  # seconds each listens
# The later listeners' chunks past their start-up lead that came from a peer. Measured
# (2 cores shared with other helpers' browser tests, load average 3-7, the last 11-16):
# 69%, 58%, 67%, 60%, 67%, 60%, 62%, 68% in the eight runs that got that far (each
# 53-70 s); with the peers made deaf (every RTCDataChannel.send a no-op: links connect,
# no data flows) 0/51, so the bound fails. One run of nine stopped before it, at its
# first listener's one stall.
PEER_SHARE = 0.4


class LiveChunkLog(ErrorLog):
    """Console errors, except the answers a live player meets by design (judged in
    tests/system/browser/test_live_player.py): its first request of a load asks for
    chunk 0 before it knows the track is live (410 ``gone``), and the elected
    fetcher's request for the chunk after the edge may end in 404."""

    def _console(self, msg: object) -> None:
        text = str(getattr(msg, "text", ""))
        location = getattr(msg, "location", {})
        where = str(location.get("url", "")) if isinstance(location, dict) else ""
        if "/chunks/" in where and ("status of 410" in text or "status of 404" in text):
            return
        super()._console(msg)


async def test_listeners_behind_nats_start_at_the_edge_and_share_it(tmp_path: Path) -> None:
    world = World(tmp_path, None, count=LISTENERS, **LIVE_OVERRIDES)
    try:
        with live_station(world, tmp_path / "icecast", seconds=150) as (_icecast, tid):
            live_window(world.gw, tid, 4)  # the ingest runs: a window to join
            log = LiveChunkLog()
            async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b, AsyncExitStack() as stack:
                listeners = await listen_live(b, stack, tid, count=LISTENERS, stagger=STAGGER, listen=LISTEN, each=True,
                                              firefox_at=FIREFOX_AT)
                # The pages still play (serving each other): the gateway's count first, then the
                # players' totals, which only grow, so the first can never exceed the second.
                live_peer = metric_sum(world.gw, "ztream_live_peer_bytes_total")
                got = sum([int(await x.page.evaluate("document.getElementById('p').stats.peerBytes"))
                           for x in listeners])
    finally:
        world.close()

    later_peer = later_total = 0
    for i, x in enumerate(listeners):
        if i > 0 and x.first_index is not None:
            after_lead = [c for c in x.chunks if int(c["index"]) >= x.first_index + LIVE_LEAD]
            later_peer += sum(c["source"] == "peer" for c in after_lead)
            later_total += len(after_lead)
    share = later_peer / later_total if later_total else 0.0
    print(f"\nlive behind NATs: {[x.browser for x in listeners]} joined at {[x.joined_s for x in listeners]} s, "
          f"edges {[x.edge for x in listeners]}, "
          f"first chunks {[x.first_index for x in listeners]}; stalls {[x.stats.get('stalls') for x in listeners]}; "
          f"latency max {[round(max(x.latencies, default=0), 2) for x in listeners]} s; "
          f"chunks from peers after the lead {later_peer}/{later_total} ({share:.0%}); "
          f"sources {[''.join(c['source'][0] for c in x.chunks) for x in listeners]}; "
          f"pairs {[[(o['outcome'], o.get('local'), o.get('remote')) for o in x.info.get('outcomes', [])] for x in listeners]}")
    for i, x in enumerate(listeners):
        first = x.first_index
        assert first is not None, f"listener {i} got no chunk"
        # near the edge it joined (it starts 3 s behind it), not at the window's start
        assert first >= x.edge - 4, (i, first, x.edge)
        # The goal is 0 (0 in eight runs of nine). Traced with `ztream bench browsers --live`
        # (docs/benchmarks.md): every stall seen on these 2 shared cores had 1.6-3.6 s of audio
        # buffered past the playhead, its chunk in hand 2-3 s before, while other Chromiums
        # started: the media pipeline starved of CPU, not a late chunk. So a listener may have
        # one such stall; one where the audio ran dry (a chunk came late) fails.
        dry = [w for w in x.stalls if buffered_ahead(w) < 0.5]
        assert not dry, (i, "ran dry", dry, x.chunks[-6:])
        assert x.stats["stalls"] <= 1, (i, x.stats, x.latencies, x.waits)
        assert len(x.latencies) >= LISTEN - 8, (i, x.latencies)
        # Firefox's playhead stands still ~1.7 s after its first sound (its audio output starting, in
        # PulseAudio here), then the pace rules win it back slowly: 4.9-5.0 s at most in three runs,
        # against 3.3-3.5 s for Chromium. Its bound is the goal's p95.
        assert max(x.latencies) < (8.0 if x.browser == "firefox" else 6.0), (i, x.browser, x.latencies)
    assert share >= PEER_SHARE, (later_peer, later_total)
    firefox = listeners[FIREFOX_AT]
    assert firefox.browser == "firefox" and any(c["source"] == "peer" for c in firefox.chunks), firefox.chunks
    # The players said which of their peer bytes were live (stats.p2p_live_down_bytes): the
    # gateway's live peer bytes, from reports every ~5 s, are some and never more than they got.
    assert 0 < live_peer <= got, (live_peer, got)
    log.assert_clean()
