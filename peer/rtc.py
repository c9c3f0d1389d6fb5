"""The aiortc side of the headless peer: one neighbour's connection, and the
conversions between the protocol's values and aiortc's objects.

The neighbour's protocol state (what it holds, what was asked of it) is the
core's (``peer/core.py``); here is only what aiortc needs: its
``RTCPeerConnection`` and DataChannel, the candidates trickled before the
remote description, and what it still sends once dropped.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiortc import RTCDataChannel, RTCIceCandidate, RTCIceServer, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

from protocol.messages import IceCandidate
from protocol.values import Json

from .faults import LateFrames

__all__ = ["Neighbour", "aiortc_candidate", "ice_server"]


@dataclass(eq=False)
class Neighbour:
    """The aiortc side of one neighbour; its protocol state is in the core."""

    peer_id: str
    outgoing: bool
    pc: RTCPeerConnection | None = None
    channel: RTCDataChannel | None = None
    open: bool = False
    closed: bool = False
    label: str = ""  # the channel's (its track)
    candidates: list[IceCandidate] = field(default_factory=list)  # trickled before the remote description
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    late: LateFrames = field(default_factory=LateFrames)  # pieces arriving after the close


def ice_server(server: dict[str, Json]) -> RTCIceServer | None:
    """One of ``welcome``'s ``ice_servers`` for aiortc; None when it is not one."""
    urls, username, credential = server.get("urls"), server.get("username"), server.get("credential")
    if isinstance(urls, list) and all(isinstance(u, str) for u in urls):
        url_list: str | list[str] = [u for u in urls if isinstance(u, str)]
    elif isinstance(urls, str):
        url_list = urls
    else:
        return None
    if not (username is None or isinstance(username, str)) or not (credential is None or isinstance(credential, str)):
        return None
    return RTCIceServer(urls=url_list, username=username, credential=credential)


def aiortc_candidate(raw: IceCandidate) -> RTCIceCandidate | None:
    """A trickled candidate for ``addIceCandidate``; None: the end of candidates.
    Raises ``ValueError`` for one aiortc cannot read."""
    if not raw.candidate:
        return None
    text = raw.candidate
    if text.startswith("candidate:"):
        text = text[len("candidate:"):]
    try:
        candidate = candidate_from_sdp(text)
    except (AssertionError, ValueError, IndexError):
        raise ValueError(f"not a candidate: {text[:80]!r}") from None
    candidate.sdpMid = raw.sdp_mid
    candidate.sdpMLineIndex = raw.sdp_mline_index
    if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
        candidate.sdpMLineIndex = 0
    return candidate
