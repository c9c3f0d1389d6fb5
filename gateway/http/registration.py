"""Registering a URL: the one path ``POST /v1/tracks`` and ``/player/`` take, with each client's share.

Theory of operation: every new track costs its client (``fairness.client_group``:
an address, or the /64 of an IPv6 one) one token of two buckets: one that
holds ``server.registrations_per_minute`` and refills that many a minute
(the burst a page may register at once), one that holds
``server.registrations_per_hour`` and refills that many an hour (the
quota). A URL that is already registered costs nothing (the same page
reloaded, a popular track). A client whose buckets are empty is refused
before any work (no DNS look-up, no catalog write): 429
``too_many_registrations`` (minute) or ``registration_quota`` (hour), with
``Retry-After`` saying when a token is back. A playlist registers its
entries one token each, in order, and stops at the first it cannot pay.

``RegistrationLimiter`` is the pure core (``now`` injected). It remembers at
most ``MAX_CLIENTS`` clients, the least recently seen forgotten first (a
forgotten client starts with full buckets: the bound only matters with more
than that many clients registering at once).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import web

from ..errors import BadRequest, TooManyRequests
from ..media import CATALOG
from ..media.catalog import Track
from ..media.fairness import client_group
from ..sources import FETCH_SOURCES

__all__ = ["MAX_CLIENTS", "REGISTRATIONS", "RegistrationLimiter", "charge_registration", "check_registration", "register_url"]

MAX_CLIENTS = 10_000


@dataclass(slots=True)
class _Buckets:
    minute: float
    hour: float
    at: float


class RegistrationLimiter:
    def __init__(self, per_minute: int, per_hour: int) -> None:
        """0 for either: that bucket never runs out."""
        self.per_minute = per_minute
        self.per_hour = per_hour
        self._clients: OrderedDict[str, _Buckets] = OrderedDict()

    def _buckets(self, client: str, now: float) -> _Buckets:
        buckets = self._clients.get(client)
        if buckets is None:
            buckets = self._clients[client] = _Buckets(float(self.per_minute), float(self.per_hour), now)
            while len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
            elapsed = max(0.0, now - buckets.at)
            buckets.minute = min(float(self.per_minute), buckets.minute + elapsed * self.per_minute / 60)
            buckets.hour = min(float(self.per_hour), buckets.hour + elapsed * self.per_hour / 3600)
            buckets.at = now
        return buckets

    def check(self, client: str, now: float) -> TooManyRequests | None:
        """The refusal ``client`` gets now (its buckets cannot pay one registration), or None."""
        buckets = self._buckets(client, now)
        if self.per_hour and buckets.hour < 1:
            wait = (1 - buckets.hour) * 3600 / self.per_hour
            return TooManyRequests(
                f"this client registered {self.per_hour} tracks within the hour; try again later",
                code="registration_quota", retry_after=math.ceil(wait))
        if self.per_minute and buckets.minute < 1:
            wait = (1 - buckets.minute) * 60 / self.per_minute
            return TooManyRequests(
                f"this client registers more than {self.per_minute} tracks a minute; slow down",
                code="too_many_registrations", retry_after=math.ceil(wait))
        return None

    def charge(self, client: str, now: float) -> None:
        """One registration made by ``client``."""
        buckets = self._buckets(client, now)
        buckets.minute = max(0.0, buckets.minute - 1) if self.per_minute else buckets.minute
        buckets.hour = max(0.0, buckets.hour - 1) if self.per_hour else buckets.hour


REGISTRATIONS = web.AppKey("registrations", RegistrationLimiter)


def check_registration(app: web.Application, client: str) -> None:
    """Raise the 429 ``client`` gets now (it cannot pay one registration), if any."""
    limiter = app.get(REGISTRATIONS)
    if limiter is not None:
        refusal = limiter.check(client_group(client) or client, time.monotonic())
        if refusal is not None:
            raise refusal


def charge_registration(app: web.Application, client: str) -> None:
    """One registration made by ``client``."""
    limiter = app.get(REGISTRATIONS)
    if limiter is not None:
        limiter.charge(client_group(client) or client, time.monotonic())


async def register_url(app: web.Application, url: str, client: str) -> tuple[Track, bool]:
    """Register ``url`` for ``client`` (an address) with the first configured source that takes it.

    Returns (track, created). Raises 429 when the client's share is spent,
    400 ``bad_url`` when no source takes the URL, or the source's refusal.
    """
    check_registration(app, client)
    source = next((s for s in app[FETCH_SOURCES] if s.accepts(url)), None)
    if source is None:
        raise BadRequest("no configured source takes this URL", code="bad_url")
    track: Track = await source.register(url)
    catalog = app[CATALOG]
    if catalog.get(track.id) is not None or await catalog.find(track.id) is not None:
        return catalog.add(track)
    probe_live = getattr(source, "probe_live", None)
    if probe_live is not None:
        # A new URL: one look at its answer's headers tells a station from a file (docs/live.md).
        track = await probe_live(track)
        if catalog.get(track.id) is not None:  # registered meanwhile
            return catalog.add(track)
    # Checked again: other registrations of this client ran while the source resolved the URL.
    check_registration(app, client)
    charge_registration(app, client)
    added = catalog.add(track)
    await catalog.shared(track.id)  # answered once every node of a cluster can serve it
    return added
