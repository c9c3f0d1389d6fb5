"""A STUN Binding responder (RFC 8489), pure: datagram and source in, answer out.

Theory of operation
-------------------
Browsers behind a NAT learn their public address (a server-reflexive ICE
candidate) by sending a STUN Binding request to a server and reading the
XOR-MAPPED-ADDRESS of its answer. Without such a server, Chromium and
Firefox listeners that granted no camera/microphone expose only mDNS host
names, and no pair of them ever connects (docs/p2p.md). The gateway answers
those requests itself, so P2P works with no configuration.

``StunResponder.handle(datagram, source, now)`` returns a ``StunAnswer``:
the bytes to send back (or ``None``) and the result to count. It is fed by a
thin asyncio ``DatagramProtocol`` (``gateway.nat.udp``) and never touches a
socket, so every rule below is tested byte by byte.

What it answers, and what it refuses (an open UDP responder on a public
address is a target for reflection attacks):

- Only well-formed RFC 5389/8489 Binding *requests*: the two top bits zero,
  the magic cookie, a length that matches the datagram and is a multiple of
  four, a datagram of at most ``MAX_REQUEST_BYTES``, attributes that parse
  (a FINGERPRINT, when present, must match). Indications, responses, other
  methods, RFC 3489 requests without the cookie and anything that does not
  parse get no answer at all (``ignored``; ``malformed`` when the header is
  a Binding request's but an attribute trips the parser, e.g. a PRIORITY of
  two bytes).
- The answer is the smallest one the RFC allows: the header and one
  XOR-MAPPED-ADDRESS (32 bytes for IPv4, 44 for IPv6), plus FINGERPRINT only
  when the request carried one. No SOFTWARE, no echoed attributes. Browsers
  send 20-byte requests (measured: Chromium 156), so an answer can be at
  most 12 (IPv4) or 24 (IPv6) bytes longer than the request that caused
  it, never a multiple of it: no amplification worth an attacker's while.
- Per source address (IP, not port, so a spoofed port sweep counts as one
  source), a token bucket of ``RATE`` requests a second up to ``BURST``;
  over it, no answer (``rate_limited``). The table of sources is bounded
  (``MAX_SOURCES``); the least recently seen are forgotten first.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from aioice import stun

__all__ = ["StunAnswer", "StunResponder", "StunResult", "RESULTS"]

StunResult = Literal["ok", "ignored", "rate_limited", "malformed"]
RESULTS: tuple[StunResult, ...] = ("ok", "ignored", "rate_limited", "malformed")

MAGIC_COOKIE = 0x2112A442
HEADER_BYTES = 20
# A Binding request from an ICE agent carries USERNAME, PRIORITY, ICE-*,
# MESSAGE-INTEGRITY and FINGERPRINT at most: well under 512 bytes.
MAX_REQUEST_BYTES = 548
BINDING_REQUEST = 0x0001
FINGERPRINT = 0x8028

RATE = 10.0
BURST = 40.0
MAX_SOURCES = 50_000


@dataclass(frozen=True, slots=True)
class StunAnswer:
    result: StunResult
    reply: bytes | None = None


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class StunResponder:
    """Answers STUN Binding requests; see the module docstring for the rules."""

    def __init__(self, *, rate: float = RATE, burst: float = BURST, max_sources: int = MAX_SOURCES) -> None:
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._sources: OrderedDict[str, _Bucket] = OrderedDict()

    def handle(self, datagram: bytes, source: tuple[str, int], now: float) -> StunAnswer:
        """One datagram from ``source`` (host, port) at ``now`` (seconds, monotonic)."""
        if not _looks_like_binding_request(datagram):
            return StunAnswer("ignored")
        if not self._take(source[0], now):
            return StunAnswer("rate_limited")
        try:
            request = stun.parse_message(datagram)
            address = ipaddress.ip_address(source[0])
        except ValueError:  # a bad FINGERPRINT, a truncated attribute, a bad address
            return StunAnswer("ignored")
        except Exception:
            # The parser trips on attacker bytes in other ways too (struct.error
            # for a PRIORITY or FINGERPRINT of 2 bytes, ...): counted, dropped,
            # never a traceback per datagram in the log.
            return StunAnswer("malformed")
        host = str(address.ipv4_mapped) if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped else str(address)
        answer = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
            attributes={"XOR-MAPPED-ADDRESS": (host, source[1])},
        )
        if "FINGERPRINT" in request.attributes:
            answer.add_fingerprint()
        return StunAnswer("ok", bytes(answer))

    def _take(self, host: str, now: float) -> bool:
        bucket = self._sources.get(host)
        if bucket is None:
            if len(self._sources) >= self.max_sources:
                self._sources.popitem(last=False)
            bucket = self._sources[host] = _Bucket(self.burst, now)
        else:
            self._sources.move_to_end(host)
            if now > bucket.stamp:
                bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
                bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False


def _looks_like_binding_request(datagram: bytes) -> bool:
    # Cheap checks first: most junk on a public UDP port fails here, before
    # any rate-limit state is spent on it.
    if not HEADER_BYTES <= len(datagram) <= MAX_REQUEST_BYTES:
        return False
    message_type, length, cookie = struct.unpack_from("!HHI", datagram)
    return bool(
        message_type == BINDING_REQUEST
        and cookie == MAGIC_COOKIE
        and length == len(datagram) - HEADER_BYTES
        and length % 4 == 0
    )
