"""Short-lived TURN credentials, as coturn's ``use-auth-secret`` expects.

The TURN REST API convention (draft-uberti-behave-turn-rest, implemented by
coturn's ``use-auth-secret`` / ``static-auth-secret``): the username is
``<expiry unix time>:<peer id>`` and the password is
``base64(HMAC-SHA1(secret, username))``. The TURN server recomputes the HMAC
from the shared secret and refuses a username whose time has passed, so the
gateway never talks to the TURN server and a leaked credential dies by
itself. Binding the peer id into the username lets the TURN server's logs be
matched with the gateway's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TypedDict

__all__ = ["IceServer", "turn_credentials"]


class IceServer(TypedDict, total=False):
    """One entry of ``RTCConfiguration.iceServers`` as browsers take it."""

    urls: list[str]
    username: str
    credential: str


def turn_credentials(urls: list[str], secret: str, peer_id: str, *, now: float, ttl_seconds: int) -> IceServer:
    """The ``iceServers`` entry for ``peer_id``, valid for ``ttl_seconds`` from ``now`` (unix time)."""
    username = f"{int(now) + ttl_seconds}:{peer_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return {"urls": list(urls), "username": username, "credential": base64.b64encode(digest).decode()}
