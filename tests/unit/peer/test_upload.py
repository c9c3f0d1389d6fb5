"""peer/upload.py against the vectors client/upload-policy.js wrote (tests/vectors/upload/)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from peer.upload import POLICIES, UploadBudget, decide_upload, policy_of, stricter, stricter_cap

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "vectors" / "upload" / "cases.json").read_text())


def _js(decision: Any) -> dict[str, Any]:
    d = asdict(decision)
    d["canShare"] = d.pop("can_share")
    return d


def test_every_decision_of_the_vectors() -> None:
    assert len(VECTORS["decide"]) == 150
    for case in VECTORS["decide"]:
        got = decide_upload(operator=case["operator"], embed=case["embed"], metered=case["metered"], choice=case["choice"])
        assert _js(got) == case["expect"], case


def test_every_cap_and_budget_sequence_of_the_vectors() -> None:
    for case in VECTORS["caps"]:
        assert stricter_cap(case["a"], case["b"]) == case["expect"]
    for case in VECTORS["budgets"]:
        budget = UploadBudget(case["kbps"], case["burst"])
        for step in case["steps"]:
            got: object = None
            if step["op"] == "canStart":
                got = budget.can_start(step["now"])
            elif step["op"] == "spend":
                budget.spend(step["bytes"], step["now"])
            elif step["op"] == "readyAt":
                got = budget.ready_at(step["now"])
            elif step["op"] == "setCap":
                budget.set_cap(step["kbps"])
            assert got == step["expect"], (case["name"], step)


def test_policies_least_strict_first() -> None:
    assert POLICIES == ("on", "opt-in", "off")
    assert stricter("on", "off") == "off" and stricter(None, "opt-in") == "opt-in" and stricter(None, None) == "on"
    assert policy_of("nonsense") == "off" and policy_of("") is None
