"""Listeners' consent and limits: the Python twin of ``client/upload-policy.js``.

Theory of operation
-------------------
Whether a listener uploads is decided by three parties, the strictest
winning: the operator (``p2p.upload``, told in ``welcome.upload``: ``"on"``,
``"opt-in"``, ``"off"``; absent: ``"on"``), the embedding page (only
stricter), and the listener (``"share"`` or ``"stop"``; ``None``: said
nothing). A metered or save-data connection uploads only after the listener
said ``"share"``. ``decide_upload`` answers ``Decision(share, ask,
can_share, reason)``; the reasons are the browser's.

How fast is ``UploadBudget``: a token bucket of bytes refilled at the cap
(``p2p.upload_kbps``, ``welcome.limits.upload_kbps``) holding at most
``burst_seconds`` of it. A chunk may start being served while the bucket is
not empty; what it sends is taken, possibly into debt, and the next chunk
waits until the debt is paid back: over any ``w`` seconds at most
``rate * (w + burst_seconds)`` bytes plus one chunk leave.

Pure: the time is an argument. ``tests/vectors/upload/cases.json`` pins this
module and the browser's to each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "POLICIES",
    "UPLOAD_BURST_SECONDS",
    "Decision",
    "UploadBudget",
    "decide_upload",
    "policy_of",
    "stricter",
    "stricter_cap",
]

Policy = Literal["on", "opt-in", "off"]
Choice = Literal["share", "stop"]

POLICIES: tuple[Policy, ...] = ("on", "opt-in", "off")  # least strict first

UPLOAD_BURST_SECONDS = 2.0  # seconds of the cap the budget holds at most


@dataclass(frozen=True, slots=True)
class Decision:
    share: bool  # upload now
    ask: bool  # show the opt-in prompt
    can_share: bool  # the listener may turn sharing on
    reason: str  # "operator" | "embed" | "listener" | "metered" | "opt-in" | "on"


def policy_of(value: object) -> Policy | None:
    """None when not said (None or empty), the policy, or ``"off"`` for anything else."""
    if value is None or value == "":
        return None
    for p in POLICIES:
        if value == p:
            return p
    return "off"


def stricter(a: Policy | None, b: Policy | None) -> Policy:
    return POLICIES[max(POLICIES.index(a or "on"), POLICIES.index(b or "on"))]


def decide_upload(
    *, operator: object = None, embed: object = None, metered: bool = False, choice: Choice | None = None,
) -> Decision:
    """Whether this listener uploads now, and whether to ask (see the module docstring)."""
    by_operator = policy_of(operator)
    policy = stricter(by_operator, policy_of(embed))
    if policy == "off":
        return Decision(False, False, False, "operator" if by_operator == "off" else "embed")
    if choice == "stop":
        return Decision(False, False, True, "listener")
    if choice == "share":
        return Decision(True, False, True, "listener")
    if metered:
        return Decision(False, policy == "opt-in", True, "metered")
    if policy == "opt-in":
        return Decision(False, True, True, "opt-in")
    return Decision(True, False, True, "on")


def stricter_cap(a: float, b: float) -> float:
    """The stricter of two caps in kbit/s (0 or less: none)."""
    if not a > 0:
        return b if b > 0 else 0
    if not b > 0:
        return a
    return min(a, b)


class UploadBudget:
    """The upload cap: a token bucket of bytes (see the module docstring)."""

    def __init__(self, kbps: float, burst_seconds: float = UPLOAD_BURST_SECONDS) -> None:
        self.burst_seconds = burst_seconds
        self.kbps: float = 0
        self.rate: float = 0  # bytes a second
        self.capacity: float = 0
        self.tokens: float = 0
        self.at: float | None = None  # when ``tokens`` was last brought up to date
        self.set_cap(kbps)

    def set_cap(self, kbps: float) -> None:
        """A new cap (the welcome's): the bucket starts full at it."""
        self.kbps = kbps if kbps > 0 else 0
        self.rate = self.kbps * 125  # 1000 / 8
        self.capacity = self.rate * self.burst_seconds
        self.tokens = self.capacity
        self.at = None

    def _refill(self, now: float) -> None:
        if self.at is not None and now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        if self.at is None or now > self.at:
            self.at = now

    def can_start(self, now: float) -> bool:
        """Whether a chunk may start being served now."""
        if self.kbps == 0:
            return True
        self._refill(now)
        return self.tokens > 0

    def spend(self, nbytes: int, now: float) -> None:
        """``nbytes`` were sent now."""
        if self.kbps == 0:
            return
        self._refill(now)
        self.tokens -= nbytes

    def ready_at(self, now: float) -> float:
        """When (same clock) the next chunk may start: ``now`` if it may now."""
        if self.can_start(now):
            return now
        return now + -self.tokens / self.rate
