"""Fair transcode slots: who may start a transcode, and which waiting one runs next.

A pure core (no I/O, no clock): ``MediaService`` asks it and does the waiting.

Theory of operation: at most ``max_concurrent`` transcodes run. Each one is
a ``Claim`` that says who it counts against: the client that started it
(``client_group``: an IPv4 address, or the /64 of an IPv6 one, since one
subscriber usually holds a whole /64) and, for a URL track, its upstream
host. A new claim is refused when its client already has ``per_client``
transcodes running or waiting, when its host has ``per_host``, or when its
queue is full. There are two queues, so URL registrations never starve the
rest: *privileged* claims (library tracks, and tracks already in the store
that need a transcode again: an evicted chunk, a missing waveform) wait in
their own queue, are started first, and only they may take the last
``reserved`` slots; the others wait first come, first served. Each queue
holds at most ``max_concurrent`` claims.

``behind_realtime`` is the rule that takes a slot back from an upstream too
slow to play: once a transcode has held its slot for ``grace`` seconds it
must have produced ``min_speed`` seconds of audio per second held since.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass
from typing import Literal

__all__ = ["Claim", "Refusal", "SlotBook", "SlotLimits", "behind_realtime", "client_group"]

Refusal = Literal["too_many_transcodes", "upstream_host_busy", "overloaded"]


def client_group(address: str | None) -> str | None:
    """What one client is for a share: its IPv4 address, or the /64 of its IPv6 address."""
    if address is None:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address  # not an IP (a Unix socket): itself
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True)
class SlotLimits:
    max_concurrent: int
    reserved: int = 0  # slots only privileged claims take
    per_client: int = 0  # running + waiting per client group; 0: no limit
    per_host: int = 0  # running + waiting per upstream host; 0: no limit

    @property
    def open_slots(self) -> int:
        """The slots an unprivileged claim may take (at least one while any slot exists)."""
        reserved = max(0, min(self.reserved, self.max_concurrent - 1))
        return self.max_concurrent - reserved


@dataclass(frozen=True, slots=True)
class Claim:
    key: str  # the flight's track id
    client: str | None = None  # client_group of who started it; None: nobody to count (the gateway itself)
    host: str | None = None  # the upstream host of a URL track
    privileged: bool = False  # a library track, or one already in the store


class SlotBook:
    """Running and waiting claims; every method is O(claims) at most, and there are few."""

    def __init__(self, limits: SlotLimits) -> None:
        self.limits = limits
        self.running: dict[str, Claim] = {}
        self._waiting: dict[bool, deque[Claim]] = {True: deque(), False: deque()}

    def waiting(self, privileged: bool | None = None) -> list[Claim]:
        if privileged is None:
            return [*self._waiting[True], *self._waiting[False]]
        return list(self._waiting[privileged])

    def _held(self) -> list[Claim]:
        return [*self.running.values(), *self._waiting[True], *self._waiting[False]]

    def refusal(self, claim: Claim) -> Refusal | None:
        """Why ``claim`` may not start now, or None."""
        held = self._held()
        limits = self.limits
        if limits.per_client and claim.client is not None:
            if sum(1 for c in held if c.client == claim.client) >= limits.per_client:
                return "too_many_transcodes"
        if limits.per_host and claim.host is not None:
            if sum(1 for c in held if c.host == claim.host) >= limits.per_host:
                return "upstream_host_busy"
        if not self._can_run(claim) and len(self._waiting[claim.privileged]) >= limits.max_concurrent:
            return "overloaded"
        return None

    def _can_run(self, claim: Claim) -> bool:
        if len(self.running) >= self.limits.max_concurrent:
            return False
        if claim.privileged:
            return True
        open_used = sum(1 for c in self.running.values() if not c.privileged)
        return open_used < self.limits.open_slots

    def add(self, claim: Claim) -> bool:
        """Book ``claim`` (``refusal`` said None): True when it runs now, False when it waits."""
        if not self._waiting[claim.privileged] and self._can_run(claim):
            self.running[claim.key] = claim
            return True
        self._waiting[claim.privileged].append(claim)
        return False

    def release(self, key: str) -> list[Claim]:
        """``key`` ended (or gave up waiting): the claims that run now because of it."""
        if self.running.pop(key, None) is None:
            for queue in self._waiting.values():
                for claim in list(queue):
                    if claim.key == key:
                        queue.remove(claim)
            return []
        started: list[Claim] = []
        for privileged in (True, False):  # the privileged queue first
            queue = self._waiting[privileged]
            while queue and self._can_run(queue[0]):
                claim = queue.popleft()
                self.running[claim.key] = claim
                started.append(claim)
        return started


def behind_realtime(*, produced: float, held: float, grace: float, min_speed: float) -> bool:
    """Whether a transcode that produced ``produced`` s of audio in ``held`` s of its slot falls behind."""
    if min_speed <= 0 or held <= grace:
        return False
    return produced < min_speed * (held - grace)
