"""peer/core.py, the Python twin of client/p2p.js, against the shared vectors.

tests/vectors/p2p/cases.json holds sequences of events (with ``now``) and the
effects ``client/p2p.js`` answers to each (tests/js/p2p-vectors.test.mjs runs
the same file); here ``peer.core.P2PCore`` must answer the same. The shared
constants are compared with both sides' defaults.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from peer.core import DEFAULT_P2P_SETTINGS, MAX_REPORT, Effect, P2PCore, P2PSettings, camel
from peer.wire import Have, Holders, Lookup, Piece, Request, encode
from peer.wire import Cancel as WireCancel
from peer.wire import Choke as WireChoke

VECTORS = Path(__file__).parent / "vectors" / "p2p"
CONSTANTS = json.loads((VECTORS / "constants.json").read_text())
CASES = json.loads((VECTORS / "cases.json").read_text())["cases"]


def step_bytes(step: dict[str, Any]) -> bytes | None:
    if "data_hex" in step:
        return None if step["data_hex"] is None else bytes.fromhex(step["data_hex"])
    return bytes(i % 251 for i in range(step["data_pattern"]))


def bytes_json(data: bytes) -> Any:
    if len(data) <= 64:
        return data.hex()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def frame_of(step: dict[str, Any]) -> bytes:
    if "hex" in step:
        return bytes.fromhex(step["hex"])
    m = step["message"]
    kind = m["type"]
    if kind == "have":
        return encode(Have(tuple((a, b) for a, b in m["ranges"])))
    if kind == "piece":
        data = step_bytes(m)
        assert data is not None
        return encode(Piece(m["index"], m["offset"], m["total"], data))
    if kind == "lookup":
        return encode(Lookup(m["track"], m["rendition"]))
    if kind == "holders":
        return encode(Holders(m["track"], m["rendition"], tuple(m["peers"])))
    return encode({"request": Request, "cancel": WireCancel, "choke": WireChoke}[kind](m["index"]))


def as_json(effects: list[Effect]) -> list[dict[str, Any]]:
    from peer.core import effect_json

    out = []
    for e in effects:
        j = effect_json(e)
        # bytes as the vectors write them: hex up to 64 bytes, else size and SHA-256
        if j["kind"] == "deliver":
            j["data"] = bytes_json(bytes.fromhex(j.pop("data_hex")))
        if j["kind"] == "send" and j["frame"]["type"] == "piece":
            j["frame"]["data"] = bytes_json(bytes.fromhex(j["frame"].pop("data_hex")))
        out.append(j)
    return out


def run_step(core: P2PCore, step: dict[str, Any]) -> Any:
    now = step.get("now", 0)
    on = step["on"]
    if on == "control":
        return as_json(core.on_control(step["msg"], now))
    if on == "controlClosed":
        return as_json(core.control_closed())
    if on == "startSession":
        s = step["session"]
        return as_json(core.start_session(s["track"], s["rendition"], s["chunks"], now,
                                          complete=s.get("complete", False), held=s.get("held", ())))
    if on == "updateManifest":
        m = step["manifest"]
        return as_json(core.update_manifest(m["chunks"], now, complete=m.get("complete", False)))
    if on == "stopSession":
        return as_json(core.stop_session(now))
    if on == "chunkAdded":
        return as_json(core.chunk_added(step["index"], now))
    if on == "chunkDropped":
        return as_json(core.chunk_dropped(step["index"]))
    if on == "request":
        r = core.request(step["peer"], step["index"], now)
        return None if r is None else as_json(r)
    if on == "cancel":
        return as_json(core.cancel(step["peer"], step["index"]))
    if on == "verifyFailed":
        return as_json(core.verify_failed(step["peer"], now))
    if on == "noteStartup":
        return as_json(core.note_startup(step["seconds"]))
    if on == "channelOpen":
        return as_json(core.channel_open(step["peer"], now))
    if on == "channelClosed":
        return as_json(core.channel_closed(step["peer"], now))
    if on == "frame":
        return as_json(core.on_frame(step["peer"], frame_of(step), now))
    if on == "served":
        return as_json(core.served(step["peer"], step["index"], step_bytes(step), now))
    if on == "tick":
        return as_json(core.tick(now, step.get("totals", {})))
    if on == "flushStats":
        return as_json(core.flush_stats(now, step.get("totals", {})))
    if on == "waitUntil":
        until = core.wait_until(now)
        return until if math.isfinite(until) else None
    if on == "lookup":
        return as_json(core.lookup(step["target"]["track"], step["target"]["rendition"], now))
    if on == "info":
        return core.info()
    raise AssertionError(f"unknown step {on}")


def test_defaults_are_the_shared_constants() -> None:
    assert DEFAULT_P2P_SETTINGS.as_js() == CONSTANTS["settings"]
    assert MAX_REPORT == CONSTANTS["max_report"]
    assert [camel(f.name) for f in fields(P2PSettings)] == list(CONSTANTS["settings"])


def test_settings_by_their_browser_names() -> None:
    assert P2PSettings.from_js({"maxNeighbours": 3}).max_neighbours == 3
    with pytest.raises(TypeError):
        P2PSettings.from_js({"maxNeighbour": 3})


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_vector(case: dict[str, Any]) -> None:
    core = P2PCore(P2PSettings.from_js(case["settings"]))
    for i, step in enumerate(case["steps"]):
        assert run_step(core, step) == step["expect"], f"step {i} ({step['on']} at {step.get('now')})"
