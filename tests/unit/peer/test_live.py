"""peer/live.py against tests/vectors/live-edge.json, which client/live-edge.js runs too,
and the properties the rules are for."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from typing import Any

import pytest

from peer import live
from peer.live import Jump, Rate
from tests.support.paths import TESTS

VECTORS = json.loads((TESTS / "vectors" / "live-edge.json").read_text())


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0, abs_tol=1e-9)


def test_constants() -> None:
    for name, value in VECTORS["constants"].items():
        assert getattr(live, name) == value, name


@pytest.mark.parametrize(("text", "expected"), VECTORS["fnv1a32"])
def test_fnv1a32(text: str, expected: int) -> None:
    assert live.fnv1a32(text) == expected


@pytest.mark.parametrize(("h", "expected"), VECTORS["fmix32"])
def test_fmix32(h: int, expected: int) -> None:
    assert live.fmix32(h) == expected


@pytest.mark.parametrize(("peer_id", "index", "expected"), VECTORS["electionHash"])
def test_election_hash(peer_id: str, index: int, expected: int) -> None:
    assert live.election_hash(peer_id, index) == expected


def _shares(pairs: list[list[str]], first: int, count: int, elect: Any) -> list[float]:
    """Each pair's first id's share of the elections over ``count`` indices from ``first``."""
    return [sum(1 for n in range(first, first + count) if elect(a, [b], n) == a) / count for a, b in pairs]


def test_the_election_is_fair_between_two_listeners() -> None:
    """electionFairness: no pair of listeners splits consecutive chunks worse than maxShare."""
    fair = VECTORS["electionFairness"]
    shares = _shares(fair["pairs"], fair["first"], fair["count"], live.elected_fetcher)
    assert len(shares) == 200
    worst = max(max(s, 1 - s) for s in shares)
    assert worst <= fair["maxShare"], worst


def test_plain_fnv_was_not_fair() -> None:
    """Why fmix32: FNV-1a of "<id>:<index>" alone splits some of the same pairs worse than 80/20."""
    fair = VECTORS["electionFairness"]

    def plain(self_id: str, others: list[str], index: int) -> str:
        return min([self_id, *others], key=lambda i: (live.fnv1a32(f"{i}:{index}"), i))

    shares = _shares(fair["pairs"], fair["first"], fair["count"], plain)
    assert sum(1 for s in shares if max(s, 1 - s) > fair["maxShare"]) >= 10


@pytest.mark.parametrize("case", VECTORS["startIndex"], ids=lambda c: c["name"])
def test_start_index(case: dict[str, Any]) -> None:
    assert live.start_index(case["entries"], case["behindSeconds"]) == case["expect"]


@pytest.mark.parametrize("case", VECTORS["paceAction"], ids=lambda c: f"{c['latency']}-{c['target']}-{c.get('recovering', False)}")
def test_pace_action(case: dict[str, Any]) -> None:
    action = live.pace_action(case["latency"], case["target"], case.get("recovering", False))
    match action:
        case Rate():
            assert set(case["expect"]) == {"rate"} and close(action.rate, case["expect"]["rate"])
        case Jump():
            assert set(case["expect"]) == {"jumpTo"} and close(action.to, case["expect"]["jumpTo"])


@pytest.mark.parametrize("case", VECTORS["electedFetcher"], ids=lambda c: c["name"])
def test_elected_fetcher(case: dict[str, Any]) -> None:
    assert live.elected_fetcher(case["selfId"], case["neighbourIds"], case["index"]) == case["expect"]
    # The order the neighbours are listed in does not matter.
    assert live.elected_fetcher(case["selfId"], reversed(case["neighbourIds"]), case["index"]) == case["expect"]


@pytest.mark.parametrize("case", VECTORS["fetchWait"], ids=lambda c: c["name"])
def test_fetch_wait(case: dict[str, Any]) -> None:
    for nbrs in (case["neighbourIds"], list(reversed(case["neighbourIds"]))):
        assert close(live.fetch_wait(case["selfId"], nbrs, case["index"], case["peerWait"]), case["expect"])


def test_fetch_wait_cuts_the_fetchers_at_once_of_a_large_swarm() -> None:
    """200 listeners that each dialled 5 earlier ones: the elected fetchers are about
    n / (d + 1); those that fetch at once (fetch_wait 0) a few, and never none in a
    swarm of 5 that all see each other."""
    rng = random.Random(5)
    n = 200
    ids = [f"L{rng.randrange(10**12)}" for _ in range(n)]
    nbrs: list[set[int]] = [set() for _ in range(n)]
    for i in range(1, n):
        for j in rng.sample(range(i), min(5, i)):
            nbrs[i].add(j)
            nbrs[j].add(i)
    elected = at_once = 0
    for index in range(1000, 1100):
        for i in range(n):
            others = [ids[j] for j in nbrs[i]]
            elected += live.elected_fetcher(ids[i], others, index) == ids[i]
            at_once += live.fetch_wait(ids[i], others, index, 0.7) == 0
    assert elected / 100 > 15 and at_once / 100 < 10, (elected / 100, at_once / 100)
    small = ids[:5]
    for index in range(1000, 1100):
        waits = [live.fetch_wait(me, [p for p in small if p != me], index, 0.7) for me in small]
        assert sorted(waits) == [0.0, 0.7, 0.7, 0.7, 0.7]


@pytest.mark.parametrize("case", VECTORS["liveFetchDelay"], ids=str)
def test_live_fetch_delay(case: dict[str, Any]) -> None:
    a = case["args"]
    delay = live.live_fetch_delay(elected=a["elected"], peer_wait=a["peerWait"], waited=a["waited"],
                                  until_needed=a["untilNeeded"], http_seconds=a["httpSeconds"])
    assert close(delay, case["expect"])


@pytest.mark.parametrize("case", VECTORS["liveLatency"], ids=str)
def test_live_latency(case: dict[str, Any]) -> None:
    assert close(live.live_latency(case["now"], case["wall"], case["offset"]), case["expect"])


def test_every_rule_has_vectors() -> None:
    assert {k for k in VECTORS if k not in ("about", "constants")} == {
        "fnv1a32", "fmix32", "electionHash", "startIndex", "paceAction", "electedFetcher", "electionFairness",
        "fetchWait", "liveFetchDelay", "liveLatency"}


def test_the_fetching_is_spread_over_a_neighbourhood() -> None:
    """Everyone in a full mesh of 5 agrees on one fetcher per chunk, and each
    is elected for about a fifth of the chunks."""
    rng = random.Random(7)
    ids = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789_-") for _ in range(22)) for _ in range(5)]
    first = 2 * 29_000_000
    counts: Counter[str] = Counter()
    for index in range(first, first + 5000):
        views = {live.elected_fetcher(me, [p for p in ids if p != me], index) for me in ids}
        assert len(views) == 1
        counts[views.pop()] += 1
    assert set(counts) == set(ids)
    assert all(800 <= n <= 1200 for n in counts.values()), counts


def test_a_ring_fetches_about_n_over_d_plus_1() -> None:
    """Listeners in a ring (degree 2) each deciding from its own neighbours:
    someone always fetches, and the HTTP fetches per chunk stay well under n."""
    rng = random.Random(11)
    n = 60
    ids = [f"peer{rng.randrange(10**9)}" for _ in range(n)]
    fetches = []
    for index in range(1000, 1400):
        elected = [me for k, me in enumerate(ids)
                   if live.elected_fetcher(me, [ids[k - 1], ids[(k + 1) % n]], index) == me]
        assert elected
        fetches.append(len(elected))
    mean = sum(fetches) / len(fetches)
    # A local minimum of a random ring: n / 3 on average (n / (d + 1), d = 2).
    assert n / 3 - 3 < mean < n / 3 + 3, mean


def test_start_index_never_starts_ahead_of_behind() -> None:
    """The audio from the start chunk to the edge's end is at least ``behind``
    (when the window has that much), and starting one chunk later would not be."""
    rng = random.Random(3)
    for _ in range(200):
        durations = [rng.uniform(0.5, 2.5) for _ in range(rng.randrange(1, 40))]
        entries = [{"index": 100 + k, "start": 0.0, "duration": d} for k, d in enumerate(durations)]
        behind = rng.uniform(0, 20)
        index = live.start_index(entries, behind)
        assert index is not None
        ahead = sum(durations[index - 100:])
        if sum(durations) >= behind:
            assert ahead >= behind - 1e-9
            assert ahead - durations[index - 100] < behind
        else:
            assert index == 100


def test_pace_keeps_the_distance() -> None:
    """A player that follows pace_action from far behind or too close ends within
    the tolerance of the target and stays there."""
    for distance in (0.0, 1.0, 5.0, 8.9, 40.0):
        d = distance
        for _ in range(600):  # ten minutes, a decision a second
            match live.pace_action(d, 3.0):
                case Jump(to):
                    d = to
                case Rate(rate):
                    d -= rate - 1.0  # one second of wall time at that rate
        assert abs(d - 3.0) <= live.PACE_TOLERANCE + 0.05, (distance, d)


def _window(first: int, last: int, **extra: Any) -> dict[str, Any]:
    chunks = [{"index": i, "duration": 1.0, "sha256": f"h{i}"} for i in range(first, last + 1)]
    return {"live": True, "rendition": "webm", "chunks": chunks, "first": chunks[0]["index"] if chunks else None,
            "edge": chunks[-1]["index"] if chunks else None, **extra}


def _delta_of(full: dict[str, Any], after: int) -> dict[str, Any]:
    """What the gateway answers to ``manifest?after=N`` for the window ``full`` (docs/live.md)."""
    return {**full, "chunks": [c for c in full["chunks"] if c["index"] > after]}


def test_delta_after_is_the_newest_index_held() -> None:
    assert live.delta_after(None) is None and live.delta_after({"chunks": []}) is None
    assert live.delta_after({"chunks": [{"index": 7}, {"index": 9}, {"index": 8}]}) == 9


def test_merging_deltas_gives_the_window_a_whole_read_gives() -> None:
    """Sliding, polls missed, away longer than the window, a reconnect's jump in indices, a window gone."""
    reconnect = _window(240, 259)
    reconnect["chunks"] += _window(900, 902)["chunks"]
    reconnect["edge"] = 902
    windows = [_window(0, 59), _window(1, 60), _window(1, 60), _window(5, 64), _window(200, 259), reconnect,
               _window(1, 0, state="starting"), _window(1000, 1003)]
    held = windows[0]
    for w in windows[1:]:
        after = live.delta_after(held)
        held = live.merge_delta(held, w if after is None else _delta_of(w, after))
        assert held == w


def test_a_delta_without_first_is_taken_whole() -> None:
    w = _window(3, 62)
    del w["first"]
    assert live.merge_delta(_window(0, 59), w) == w
