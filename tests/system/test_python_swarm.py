"""Small swarms of aiortc peers against a real gateway, accelerated.

Correctness checks, not the benchmark (``ztream bench swarm`` prints those
figures): peers carry most of the audio, nothing stalls, every chunk held
matches its manifest hash, and neither corrupting nor vanishing peers make
anyone stall or use a bad chunk. No timing is asserted.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bench.swarm import plan_roles, run_swarm
from tests.support.audio import make_audio


@pytest.fixture(scope="module")
def swarm_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("swarm")
    make_audio(d / "ninety.flac", 90, freq=294)
    return d


def warm(url: str, track: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/v1/tracks/{track}/manifest", timeout=10) as r:
            if json.load(r)["complete"]:
                return
        time.sleep(0.1)
    raise AssertionError("the transcode did not finish")


def test_plan_roles() -> None:
    roles = plan_roles(10, 0.3, 2, random.Random(3))
    assert roles[0] == "ok"
    assert roles.count("bad") == 2 and roles.count("close") + roles.count("vanish") == 3
    assert plan_roles(1, 0.5, 3, random.Random(1)) == ["ok"]
    roles = plan_roles(10, 0.0, 0, random.Random(3), liars=3)
    assert roles[0] == "ok" and roles.count("liar") == 3


async def test_small_swarm(gateway_factory: Any, swarm_library: Path) -> None:
    gw = gateway_factory(library=swarm_library)
    track = gw.library_ids[0]
    warm(gw.url, track)
    result = await run_swarm(gw.url, track, peers=5, arrival=0.4, speed=12, timeout=60)
    s = result.summary()
    assert s["played_to_end"] == 5, s
    assert s["stalls"] == 0, s
    assert s["offload"] > 0.5, s
    assert s["verify_failures"] == 0 and s["bad_chunks_used"] == 0
    assert all(r.held == r.total_chunks and r.hash_mismatches == 0 for r in result.reports)
    # the gateway saw the same bytes the peers counted
    assert s["metrics_server_bytes"] == s["server_bytes"]
    assert s["metrics_peer_bytes"] == s["peer_bytes"]
    assert s["metrics_stalls"] == 0


async def test_corrupting_and_vanishing_peers_cause_no_stall(gateway_factory: Any, swarm_library: Path) -> None:
    gw = gateway_factory(library=swarm_library)
    track = gw.library_ids[0]
    warm(gw.url, track)
    result = await run_swarm(gw.url, track, peers=7, arrival=0.3, speed=12, churn=0.3, bad_peers=2, seed=5,
                             timeout=60)
    s = result.summary()
    roles = result.roles
    assert roles.count("bad") == 2 and {"close", "vanish"} <= set(roles), roles
    assert s["stalls"] == 0, s
    assert s["bad_chunks_used"] == 0, s
    assert s["bad_chunks_sent"] > 0 and s["verify_failures"] > 0, s
    # Every bad chunk that arrived was caught: refused by its hash, or dropped
    # unread because its sender had been banned meanwhile. (Some chunks a bad
    # peer queued never arrive: the receiver closed the connection first.)
    assert s["verify_failures"] + s["bad_chunks_discarded"] <= s["bad_chunks_sent"]
    for report, role in zip(result.reports, roles):
        assert report.hash_mismatches == 0
        if role in ("ok", "bad"):
            assert report.played_to_end, (role, report)
    assert s["metrics_verify_failures"] == s["verify_failures"]
    assert s["metrics_stalls"] == 0


async def test_a_poisoned_swarm_keeps_its_offload(gateway_factory: Any, swarm_library: Path) -> None:
    # 10 peers, 3 of them liars (claim the whole track, serve nothing, answer no
    # offer): the honest peers' offload stays within 10 points of a clean swarm's.
    gw = gateway_factory(library=swarm_library)
    track = gw.library_ids[0]
    warm(gw.url, track)
    clean = (await run_swarm(gw.url, track, peers=10, arrival=0.3, speed=12, timeout=60, seed=7)).summary()
    poisoned_run = await run_swarm(gw.url, track, peers=10, arrival=0.3, speed=12, timeout=60, seed=7, liars=3)
    poisoned = poisoned_run.summary()
    assert poisoned_run.roles.count("liar") == 3 and poisoned_run.roles[0] == "ok"
    honest = [r for r, role in zip(poisoned_run.reports, poisoned_run.roles) if role != "liar"]
    assert all(r.played_to_end and r.held == r.total_chunks and r.hash_mismatches == 0 for r in honest)
    assert poisoned["honest_offload"] >= clean["honest_offload"] - 0.10, (clean, poisoned)
    # The liars delivered nothing; the gateway's figure is the peers' own count.
    liars = [r for r, role in zip(poisoned_run.reports, poisoned_run.roles) if role == "liar"]
    assert all(r.p2p_up_bytes == 0 for r in liars)
    assert poisoned["metrics_peer_bytes"] == poisoned["peer_bytes"]
