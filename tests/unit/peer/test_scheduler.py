"""peer/scheduler.py against the vectors that client/scheduler.js also runs.

``tests/vectors/scheduler/cases.json`` holds hand-written scenarios (the
rules of docs/wire.md ("Behaviour", "Verification"), one by one); ``random.json`` holds long random traces
whose expectations were recorded from this implementation and which the
JavaScript module must reproduce step for step
(``tests/js/scheduler-vectors.test.mjs``). Regenerate ``random.json`` with
``python -m tests.unit.peer.test_scheduler`` after a deliberate rule change (and
change ``client/scheduler.js`` the same way).
"""

from __future__ import annotations

import json
import math
import random
import sys
from typing import Any

import pytest

from peer.scheduler import (
    CACHE,
    DEFAULT_SETTINGS,
    SERVER,
    Request,
    Scheduler,
    Settings,
    chunk_index_at,
    js_to_snake,
)
from tests.support.paths import ROOT, TESTS

DIR = TESTS / "vectors" / "scheduler"
FILES = sorted(DIR.glob("*.json"))


def manifest_of(m: dict[str, Any]) -> dict[str, Any]:
    if isinstance(m.get("chunks"), list):
        return {"chunks": m["chunks"], "complete": bool(m.get("complete"))}
    return {
        "chunks": [{"index": i, "start": i * m["d"], "duration": m["d"]} for i in range(m["n"])],
        "complete": bool(m.get("complete")),
    }


def have_of(step: dict[str, Any]) -> list[int]:
    if "haveRange" in step:
        return list(range(*step["haveRange"]))
    return list(step.get("have", []))


def check_requests(where: str, got: list[Request], step: dict[str, Any]) -> None:
    assert [f"{r.index}@{r.source}" for r in got] == step["expect"], where
    if "deadlines" in step:
        assert len(got) == len(step["deadlines"]), where
        for r, want in zip(got, step["deadlines"]):
            if want is None:
                assert r.deadline is None, f"{where}: deadline of {r.index}"
            else:
                assert r.deadline is not None and abs(r.deadline - want) < 1e-9, f"{where}: deadline of {r.index}"
    if "live" in step:
        assert [r.live for r in got] == step["live"], where


def check_state(where: str, s: Scheduler, step: dict[str, Any]) -> None:
    if "emergency" in step:
        assert s.emergency == step["emergency"], f"{where}: emergency"
    for p, v in step.get("bufferedAhead", []):
        assert abs(s.buffered_ahead(p) - v) < 1e-9, f"{where}: bufferedAhead({p})"
    for p, v in step.get("bufferedToEnd", []):
        assert s.buffered_to_end(p) == v, f"{where}: bufferedToEnd({p})"
    for peer_id, n in step.get("failures", {}).items():
        assert s.peers[peer_id].failures == n, f"{where}: failures of {peer_id}"
    if "cached" in step:
        assert sorted(s.cached) == step["cached"], f"{where}: cached"
    if "inflight" in step:
        got = [f"{r.index}@{r.source}" for r in sorted(s.inflight.values(), key=lambda r: r.index)]
        assert got == step["inflight"], f"{where}: inflight"


def apply(s: Scheduler, step: dict[str, Any]) -> list[Request] | None:
    """One vector step on ``s``; the requests it returned, if it returns any."""
    op = step["op"]
    if op == "setManifest":
        s.set_manifest(manifest_of(step["manifest"]))
    elif op == "seek":
        return s.seek(step["position"])
    elif op == "received":
        s.received(step["index"])
    elif op == "failed":
        s.failed(step["index"], now=step["now"])
    elif op == "evicted":
        s.evicted(step["index"])
    elif op == "setBuffered":
        s.set_buffered(step["indices"])
    elif op == "setCached":
        s.set_cached(step["indices"])
    elif op == "addCached":
        s.add_cached(step["index"])
    elif op == "setPeer":
        s.set_peer(step["id"], have_of(step), step.get("slots"))
    elif op == "peerHave":
        s.peer_have(step["id"], step["indices"])
    elif op == "setPeerWait":
        s.set_peer_wait(-math.inf if step["until"] is None else step["until"])
    elif op == "removePeer":
        return s.remove_peer(step["id"])
    elif op == "next":
        return s.next(step["now"], step["playhead"])
    elif op == "expired":
        return s.expired(step["now"], step["playhead"])
    elif op != "check":
        raise AssertionError(f"unknown op {op!r}")
    return None


def run_case(case: dict[str, Any]) -> None:
    s = Scheduler.from_js_settings(case.get("settings", {}))
    s.set_manifest(manifest_of(case["manifest"]))
    for k, step in enumerate(case["steps"]):
        where = f"{case['name']}, step {k} ({step['op']})"
        got = apply(s, step)
        if step["op"] == "check":
            check_state(where, s, step)
        elif "expect" in step:
            assert got is not None, where
            check_requests(where, got, step)


def _cases() -> list[Any]:
    out = []
    for path in FILES:
        for case in json.loads(path.read_text())["cases"]:
            out.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return out


def _index_vectors() -> list[Any]:
    out = []
    for path in FILES:
        for k, v in enumerate(json.loads(path.read_text()).get("chunkIndexAt", [])):
            out.append(pytest.param(v, id=f"{path.stem}#{k}"))
    return out


@pytest.mark.parametrize("case", _cases())
def test_vectors(case: dict[str, Any]) -> None:
    run_case(case)


@pytest.mark.parametrize("vector", _index_vectors())
def test_chunk_index_at(vector: dict[str, Any]) -> None:
    raw = vector["chunks"]
    chunks = raw if isinstance(raw, list) else manifest_of(raw)["chunks"]
    s = Scheduler()
    s.set_manifest({"chunks": chunks})
    for t, want in vector["at"]:
        assert chunk_index_at(s.chunks, t) == want, t


def test_random_vectors_are_current() -> None:
    """random.json is what this implementation records (regenerate on purpose only)."""
    assert json.loads((DIR / "random.json").read_text()) == generate()


def test_defaults_and_settings_names_match_the_javascript_module() -> None:
    js = (ROOT / "client" / "scheduler.js").read_text()
    block = js.split("DEFAULT_SETTINGS = Object.freeze({", 1)[1].split("});", 1)[0]
    found = {}
    for line in block.splitlines():
        line = line.split("//", 1)[0].strip().rstrip(",")
        if ":" in line:
            key, value = (part.strip() for part in line.split(":", 1))
            found[js_to_snake(key)] = float(value)
    assert found == {k: float(getattr(DEFAULT_SETTINGS, k)) for k in Settings.__dataclass_fields__}
    with pytest.raises(TypeError):
        Scheduler.from_js_settings({"bufferAhaed": 3})
    assert Scheduler.from_js_settings({"serverLead": 6}).settings.server_lead == 6
    assert (SERVER, CACHE) == ("server", "cache")


# ---- the random traces -------------------------------------------------------


def _round(x: float) -> float:
    return round(x, 2)


def _random_case(rng: random.Random, number: int) -> dict[str, Any]:
    n = rng.randint(3, 40)
    if rng.random() < 0.6:
        manifest: dict[str, Any] = {"n": n, "d": 2, "complete": rng.random() < 0.85}
    else:
        chunks, t = [], 0.0
        for i in range(n):
            d = _round(rng.uniform(0.3, 3.5))
            chunks.append({"index": i, "start": _round(t), "duration": d})
            t += d
        manifest = {"chunks": chunks, "complete": rng.random() < 0.85}
    settings: dict[str, Any] = {}
    for key, choices in (
        ("serverParallel", [1, 2, 3]), ("peerSlots", [1, 2, 4]), ("maxInflight", [3, 8, 12]),
        ("bufferAhead", [8, 20, 30]), ("cacheParallel", [1, 4]),
    ):
        if rng.random() < 0.3:
            settings[key] = rng.choice(choices)
    s = Scheduler.from_js_settings(settings)
    full = manifest_of(manifest)
    listed = n if manifest.get("complete") or rng.random() < 0.5 else rng.randint(0, n)
    current = {"chunks": full["chunks"][:listed], "complete": manifest.get("complete", False) and listed == n}
    s.set_manifest(current)
    case_manifest = (
        {"chunks": current["chunks"], "complete": current["complete"]}
        if "chunks" in manifest or listed != n else manifest
    )
    peers = ["a", "b", "c", "p-4"]
    now, playhead = 0.0, 0.0
    steps: list[dict[str, Any]] = []

    def record(step: dict[str, Any]) -> None:
        got = apply(s, step)
        if got is not None:
            step["expect"] = [f"{r.index}@{r.source}" for r in got]
            step["deadlines"] = [r.deadline for r in got]
            step["live"] = [r.live for r in got]
        steps.append(step)

    if rng.random() < 0.3:
        record({"op": "setCached", "indices": sorted(rng.sample(range(n), rng.randint(0, min(n, 6))))})
    for _ in range(rng.randint(30, 90)):
        roll = rng.random()
        inflight = list(s.inflight.values())
        if roll < 0.25:
            now = _round(now + rng.uniform(0, 2.5))
            if rng.random() < 0.6:
                playhead = _round(playhead + rng.uniform(0, 1.2))
            record({"op": "next", "now": now, "playhead": playhead})
        elif roll < 0.35:
            record({"op": "expired", "now": now, "playhead": playhead})
        elif roll < 0.38:
            # a healthy buffer from the playhead on, so that peers get their turn
            first = max(0, chunk_index_at(s.chunks, playhead))
            record({"op": "setBuffered", "indices": list(range(first, min(n, first + rng.randint(2, 8))))})
        elif roll < 0.55 and inflight:
            req = rng.choice(inflight)
            record({"op": "received", "index": req.index})
        elif roll < 0.62 and inflight:
            req = rng.choice(inflight)
            record({"op": "failed", "index": req.index, "now": now})
        elif roll < 0.70:
            peer = rng.choice(peers)
            have = sorted(rng.sample(range(n), rng.randint(0, n)))
            step: dict[str, Any] = {"op": "setPeer", "id": peer, "have": have}
            if rng.random() < 0.5:
                step["slots"] = rng.randint(1, 3)
            record(step)
        elif roll < 0.75 and s.peers:
            record({"op": "peerHave", "id": rng.choice(sorted(s.peers)), "indices": rng.sample(range(n), 3 if n > 3 else n)})
        elif roll < 0.79:
            record({"op": "removePeer", "id": rng.choice(peers)})
        elif roll < 0.82:
            playhead = _round(rng.uniform(0, n * 2))
            record({"op": "seek", "position": playhead})
        elif roll < 0.85 and s.buffered:
            record({"op": "evicted", "index": rng.choice(sorted(s.buffered))})
        elif roll < 0.88:
            record({"op": "addCached", "index": rng.randrange(n)})
        elif roll < 0.91 and not s.complete:
            listed = min(n, listed + rng.randint(1, 4))
            current = {"chunks": full["chunks"][:listed], "complete": listed == n and rng.random() < 0.7}
            record({"op": "setManifest", "manifest": current})
        elif roll < 0.94:
            until = _round(now + rng.uniform(-1, 4)) if rng.random() < 0.8 else None
            record({"op": "setPeerWait", "until": until})
        else:
            probes = [_round(rng.uniform(0, n * 2.2)) for _ in range(2)] + [playhead]
            step = {
                "op": "check",
                "emergency": s.emergency,
                "bufferedAhead": [[p, s.buffered_ahead(p)] for p in probes],
                "bufferedToEnd": [[p, s.buffered_to_end(p)] for p in probes],
                "failures": {p.id: p.failures for p in s.peers.values()},
                "cached": sorted(s.cached),
                "inflight": [f"{r.index}@{r.source}" for r in sorted(s.inflight.values(), key=lambda r: r.index)],
            }
            steps.append(step)
    for step in steps:
        for key in ("bufferedAhead",):
            for pair in step.get(key, []):
                assert math.isfinite(pair[1])
    return {"name": f"random trace {number}", "settings": settings, "manifest": case_manifest, "steps": steps}


def generate(seed: int = 20240606, count: int = 40) -> dict[str, Any]:
    rng = random.Random(seed)
    return {
        "about": "Random traces recorded from peer/scheduler.py (python -m tests.unit.peer.test_scheduler); "
        "client/scheduler.js must reproduce them step for step. Format: see cases.json.",
        "cases": [_random_case(rng, k) for k in range(count)],
    }


if __name__ == "__main__":
    (DIR / "random.json").write_text(json.dumps(generate(), separators=(",", ":")) + "\n")
    print(f"wrote {DIR / 'random.json'}", file=sys.stderr)
