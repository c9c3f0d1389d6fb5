"""Address policy for upstream fetches: which URLs and addresses may be contacted.

Theory of operation
-------------------
This module does no I/O. It answers three questions for the fetcher
(``gateway/sources/fetch.py``), which does the DNS lookup and the connection:

1. Is this URL acceptable at all? :func:`parse_url` accepts only ``http`` and
   ``https`` URLs with a plain host (no userinfo) and returns one canonical
   form of the host. The canonical host is what the allow-list matches and
   what the resolver is asked about, so the name that is checked and the name
   that is looked up cannot differ.
2. Is this host listed? :class:`HostPolicy` holds the operator's
   ``allow_hosts``. An empty list means "any public host"; a non-empty list
   means "only these hosts, wherever they resolve to" (that is how an operator
   lets the gateway fetch from a service on its own LAN).
3. Are these addresses public? :func:`forbidden_reason` classifies one
   address, including IPv4 addresses hidden inside IPv6 ones (IPv4-mapped,
   IPv4-compatible, NAT64, 6to4, Teredo), since the kernel or a translator
   on the path delivers those to the embedded IPv4 address.

Numeric host spellings such as ``2130706433``, ``0x7f.1`` or ``127.1`` are
parsed by ``inet_aton`` (so by ``getaddrinfo``) and by browsers (WHATWG
"ends in a number" rule) as IPv4 addresses, but httpx keeps them as host
names. :func:`parse_url` refuses them unless they are a canonical dotted quad,
so an allow-list entry ``127.0.0.1`` can never be reached as ``127.1`` and a
private address can never hide behind an unusual spelling.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from gateway.errors import BadRequest, Forbidden

__all__ = ["HostPolicy", "ParsedURL", "forbidden_reason", "ip_literal", "parse_url"]

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443}

# --------------------------------------------------------------------------
# Address classification
# --------------------------------------------------------------------------

_N4 = ipaddress.IPv4Network
_N6 = ipaddress.IPv6Network

# Explicit tables first, so that the verdict does not depend on which Python
# release's ``is_private``/``is_global`` lists we run on (they changed in
# 3.11.10/3.12.4/3.13); the ``ipaddress`` properties below are the backstop.
# Order matters only for the reason reported. Sources: the IANA IPv4 and IPv6
# Special-Purpose Address Registries (RFC 6890), RFC 6598 (CGNAT),
# RFC 5737 and RFC 9637 (documentation), RFC 3879 (site-local).
_V4_NETWORKS: tuple[tuple[str, _N4], ...] = (
    ("broadcast", _N4("255.255.255.255/32")),
    ("unspecified", _N4("0.0.0.0/32")),
    ("this-network", _N4("0.0.0.0/8")),
    ("loopback", _N4("127.0.0.0/8")),
    ("private", _N4("10.0.0.0/8")),
    ("private", _N4("172.16.0.0/12")),
    ("private", _N4("192.168.0.0/16")),
    ("carrier-grade NAT", _N4("100.64.0.0/10")),
    ("link-local", _N4("169.254.0.0/16")),
    ("IETF protocol assignment", _N4("192.0.0.0/24")),
    ("documentation", _N4("192.0.2.0/24")),
    ("documentation", _N4("198.51.100.0/24")),
    ("documentation", _N4("203.0.113.0/24")),
    ("benchmarking", _N4("198.18.0.0/15")),
    ("multicast", _N4("224.0.0.0/4")),
    ("reserved", _N4("240.0.0.0/4")),
)

_V6_NETWORKS: tuple[tuple[str, _N6], ...] = (
    ("unspecified", _N6("::/128")),
    ("loopback", _N6("::1/128")),
    ("discard-only", _N6("100::/64")),
    ("documentation", _N6("2001:db8::/32")),
    ("documentation", _N6("3fff::/20")),
    ("unique local", _N6("fc00::/7")),
    ("link-local", _N6("fe80::/10")),
    ("site-local", _N6("fec0::/10")),
    ("multicast", _N6("ff00::/8")),
)

# Backstop: whatever these ``ipaddress`` properties flag is refused too.
_PROPERTIES: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("unspecified", lambda ip: ip.is_unspecified),
    ("loopback", lambda ip: ip.is_loopback),
    ("link-local", lambda ip: ip.is_link_local),
    ("multicast", lambda ip: ip.is_multicast),
    ("site-local", lambda ip: isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
    ("private", lambda ip: ip.is_private),
    ("reserved", lambda ip: ip.is_reserved),
    ("not globally routable", lambda ip: not ip.is_global),
)

_NAT64_WKP = _N6("64:ff9b::/96")  # RFC 6052 well-known prefix
_NAT64_LOCAL = _N6("64:ff9b:1::/48")  # RFC 8215 local-use prefix
_IPV4_COMPAT = _N6("::/96")  # RFC 4291 2.5.5.1 (deprecated)
_TEREDO = _N6("2001::/32")  # RFC 4380
_SIXTOFOUR = _N6("2002::/16")  # RFC 3056


def _nat64_candidates(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an RFC 6052 translator could extract from ``ip``.

    The local-use prefix 64:ff9b:1::/48 may be used with any NAT64 prefix
    length of /48 or longer, and we cannot know which one the network uses,
    so every layout it allows is tried: /48, /56, /64 (the IPv4 bits skip the
    reserved "u" octet, bits 64-71) and /96 (the last 32 bits).
    """
    value = int(ip)
    # Drop bits 64..71 (the u octet): a 120-bit string where the IPv4 address
    # starts right after the prefix for prefix lengths up to 64.
    without_u = ((value >> 64) << 56) | (value & ((1 << 56) - 1))
    found = [ipaddress.IPv4Address(value & 0xFFFFFFFF)]  # /96, the usual one
    found.extend(ipaddress.IPv4Address((without_u >> (120 - length - 32)) & 0xFFFFFFFF) for length in (48, 56, 64))
    return found


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """IPv4 addresses that traffic to ``ip`` may really be delivered to."""
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if ip in _IPV4_COMPAT and int(ip) > 1:  # ::/128 and ::1 are themselves
        found.append(("IPv4-compatible", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    if ip in _SIXTOFOUR:
        # 2002:AABB:CCDD::/48 -> AA.BB.CC.DD (bits 16-48).
        found.append(("6to4", ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)))
    if ip in _TEREDO:
        # ``ipaddress`` already un-XORs the client address (last 32 bits).
        server, client = ip.teredo or (None, None)
        if server is not None and client is not None:
            found.append(("Teredo server", server))
            found.append(("Teredo client", client))
    if ip in _NAT64_LOCAL:
        found.extend(("NAT64", v4) for v4 in _nat64_candidates(ip))
    return found


def _plain_reason(ip: IPAddress) -> str | None:
    """Classify ``ip`` by the tables and properties alone (no embedding)."""
    networks: Sequence[tuple[str, _N4 | _N6]] = (
        _V4_NETWORKS if isinstance(ip, ipaddress.IPv4Address) else _V6_NETWORKS
    )
    for reason, network in networks:
        if ip in network:
            return reason
    for reason, predicate in _PROPERTIES:
        if predicate(ip):
            return reason
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Say why ``ip`` must not be contacted, or return None if it is public.

    Takes an ``IPv4Address`` or ``IPv6Address`` (a scope id such as
    ``fe80::1%eth0`` is fine). Returns a short human reason such as
    ``"loopback"``, ``"carrier-grade NAT"`` or ``"6to4 embeds loopback"``.
    Never raises for a valid address object.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            # ::ffff:a.b.c.d *is* a.b.c.d on a dual-stack socket, so its
            # verdict is exactly the IPv4 one (public ones stay reachable).
            inner = _plain_reason(mapped)
            return None if inner is None else f"IPv4-mapped {inner}"
        if ip in _NAT64_WKP:
            # 64:ff9b::a.b.c.d is how DNS64 networks reach IPv4-only hosts;
            # like the mapped form, the embedded address decides.
            inner = _plain_reason(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
            return None if inner is None else f"NAT64 {inner}"
        for kind, v4 in _embedded_ipv4(ip):
            inner = _plain_reason(v4)
            if inner is not None:
                return f"{kind} embeds {inner}"
    return _plain_reason(ip)


def ip_literal(host: str) -> IPAddress | None:
    """Return the address if ``host`` (canonical, no brackets) is an IP literal."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# --------------------------------------------------------------------------
# URL parsing
# --------------------------------------------------------------------------

# Letters, digits, '-' and '_' (seen in real CDN names); IDNA names arrive
# here already as xn-- punycode. Anything else (percent signs, '%25' zone
# ids, spaces, commas...) is refused rather than passed to getaddrinfo.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# WHATWG URL "ends in a number": a last label of decimal digits or 0x-hex.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
# Same split as httpx's own URL regex, to read the port as written.
_AUTHORITY = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://(?P<authority>[^/?#]*)")


def _bad_url(detail: str) -> BadRequest:
    return BadRequest(detail, code="bad_url")


def canonical_host(host: str) -> str:
    """Canonicalize an ASCII host (as httpx's ``raw_host`` gives it).

    Lowercases, drops one trailing dot, compresses IPv6 literals, and refuses
    numeric spellings other than a canonical dotted quad.

    Raises:
        BadRequest(code="bad_url"): for anything that is not a plain DNS
        name, a canonical IPv4 address or an IPv6 address without zone id.
    """
    host = host.lower()
    if ":" in host:
        if "%" in host:
            raise _bad_url("IPv6 zone identifiers are not allowed")
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise _bad_url("invalid IPv6 address") from None
    host = host.removesuffix(".")
    if not host or len(host) > 253:
        raise _bad_url("missing or overlong host")
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # Would be read as an IPv4 address by inet_aton and browsers; only
        # the one unambiguous spelling is accepted.
        # IPv4Address refuses leading zeros (octal) and short forms, so
        # whatever it accepts is already the canonical dotted quad.
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise _bad_url(f"ambiguous numeric host {host!r}") from None
        return host
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise _bad_url(f"invalid host name {host!r}")
    return host


def _port_as_written(url: str) -> str:
    """The port text of ``url``'s authority, "" if none (httpx hides it)."""
    match = _AUTHORITY.match(url)
    if match is None:
        return ""
    hostport = match.group("authority").rpartition("@")[2]
    if hostport.startswith("["):
        rest = hostport.partition("]")[2]
        return rest.removeprefix(":")
    return hostport.partition(":")[2]


@dataclass(frozen=True, slots=True)
class ParsedURL:
    """An upstream URL that passed :func:`parse_url`.

    ``host`` is lowercase ASCII without brackets (IDNA names as punycode,
    IPv6 compressed); ``port`` is explicit or the scheme's default; ``url``
    is the normalized URL without fragment, which is what callers store.
    """

    scheme: str
    host: str
    port: int
    url: str

    @property
    def netloc(self) -> str:
        """The ``Host`` header value: host (bracketed if IPv6), port if not default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"

    @property
    def origin(self) -> tuple[str, str, int]:
        """(scheme, host, port), to compare origins across redirects."""
        return (self.scheme, self.host, self.port)


def parse_url(url: str) -> ParsedURL:
    """Validate and normalize an upstream URL.

    Takes any string. Returns a :class:`ParsedURL`. The fragment is dropped
    (it is never sent and must not influence the check).

    Raises:
        BadRequest(code="bad_url"): not a string, not parseable, a scheme
        other than http/https, a missing host, userinfo (``user@host``), a
        port that is not 1-65535 written in ASCII digits, or a host refused
        by :func:`canonical_host`.
    """
    if not isinstance(url, str):
        raise _bad_url("URL must be a string")
    try:
        parsed = httpx.URL(url)
        scheme = parsed.scheme
        if scheme not in DEFAULT_PORTS:
            raise _bad_url("only http and https URLs are allowed")
        authority = _AUTHORITY.match(url)
        # Any '@' in the authority counts, even an empty "http://@host/":
        # userinfo is how "http://allowed@evil/" tricks humans and parsers.
        if parsed.userinfo or (authority is not None and "@" in authority.group("authority")):
            raise _bad_url("credentials in URLs are not allowed")
        raw_host = parsed.raw_host.decode("ascii")
        if not raw_host:
            raise _bad_url("URL has no host")
        port_text = _port_as_written(url)
        # httpx runs the port through int(), which also takes "+80", "8_0"
        # and non-ASCII digits; only plain digits are a port here.
        if port_text and not (port_text.isascii() and port_text.isdigit()):
            raise _bad_url("invalid port")
        port = parsed.port if parsed.port is not None else DEFAULT_PORTS[scheme]
        if not 0 < port < 65536:
            raise _bad_url("invalid port")
        host = canonical_host(raw_host)
        explicit_port = None if port == DEFAULT_PORTS[scheme] else port
        normalized = parsed.copy_with(host=host, port=explicit_port, fragment=None)
        return ParsedURL(scheme=scheme, host=host, port=port, url=str(normalized))
    except BadRequest:
        raise
    except (httpx.InvalidURL, ValueError, TypeError, UnicodeError) as exc:
        # httpx.InvalidURL is a ValueError subclass in some versions and not
        # in others; either way nothing but BadRequest leaves this function.
        raise _bad_url(f"invalid URL: {exc}") from None


# --------------------------------------------------------------------------
# Host policy
# --------------------------------------------------------------------------


def _parse_allow_entry(entry: str) -> tuple[str, int | None]:
    """Parse an ``allow_hosts`` entry into (canonical host, port or None).

    Accepts ``host``, ``host:port``, ``[v6]``, ``[v6]:port`` and bare ``v6``.

    Raises:
        ValueError: for a malformed entry (a configuration error).
    """
    text = entry.strip().lower()
    port_text = ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or ":" not in host or (rest and not rest.startswith(":")):
            raise ValueError(f"bad allow_hosts entry {entry!r}")
        port_text = rest[1:]
    elif text.count(":") > 1:
        host = text  # bare IPv6 literal, no port possible
    else:
        host, _, port_text = text.partition(":")
    try:
        if ":" not in host and not host.isascii():
            # Same IDNA encoding as for URLs, so the entry and the URL agree.
            host = httpx.URL(f"http://{host}/").raw_host.decode("ascii")
        canonical = canonical_host(host)
    except (BadRequest, httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise ValueError(f"bad allow_hosts entry {entry!r}: {exc}") from None
    if not port_text:
        if text.endswith(":"):
            raise ValueError(f"bad allow_hosts entry {entry!r}: empty port")
        return canonical, None
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad allow_hosts entry {entry!r}: invalid port")
    return canonical, int(port_text)


class HostPolicy:
    """The operator's allow-list plus the public-address rule.

    With no entries, any host is allowed as long as every address it
    resolves to is public. With entries, only listed hosts are allowed, and
    they are trusted wherever they resolve (private or loopback included).
    Matching uses the canonical host as written in the URL, not its
    addresses: ``127.0.0.1:8123`` lists that literal, not ``localhost``.
    """

    def __init__(self, allow_hosts: Sequence[str] = ()) -> None:
        """Take entries like ``"cdn.example"``, ``"127.0.0.1:8123"``, ``"[::1]:8080"``, ``"::1"``.

        Raises:
            ValueError: if an entry is malformed.
            TypeError: if ``allow_hosts`` is a bare string.
        """
        if isinstance(allow_hosts, str):
            # A lone string would otherwise be split into characters.
            raise TypeError("allow_hosts must be a sequence of entries, not a string")
        self._any_port: set[str] = set()
        self._ports: set[tuple[str, int]] = set()
        for entry in allow_hosts:
            host, port = _parse_allow_entry(entry)
            if port is None:
                self._any_port.add(host)
            else:
                self._ports.add((host, port))

    @property
    def restricted(self) -> bool:
        """True if an allow-list is configured (only listed hosts pass)."""
        return bool(self._any_port or self._ports)

    def is_listed(self, host: str, port: int) -> bool:
        """Is ``host`` (canonical, as in :class:`ParsedURL`) on ``port`` listed?"""
        host = host.lower()
        return host in self._any_port or (host, port) in self._ports

    def check_host(self, host: str, port: int) -> None:
        """Refuse a host before any DNS lookup if an allow-list excludes it.

        Raises:
            Forbidden(code="host_not_allowed"): allow-list set, host not on it.
        """
        if self.restricted and not self.is_listed(host, port):
            raise Forbidden(f"upstream host {host!r} is not allowed", code="host_not_allowed")

    def check(self, host: str, port: int, addresses: Sequence[str]) -> str:
        """Decide whether ``host:port``, resolved to ``addresses``, may be contacted.

        Takes the canonical host, the port and the resolved addresses (as
        strings, in resolver order). Returns the address to connect to: the
        first one, since every one of them has been checked.

        Raises:
            Forbidden(code="host_not_allowed"): allow-list set, host not on it.
            Forbidden(code="upstream_forbidden"): no addresses, an address
            that does not parse, or (for an unlisted host) any non-public
            address. The detail names the host only; the address and the
            reason go to the debug log, so that probing does not map
            internal DNS.
        """
        self.check_host(host, port)
        if not addresses:
            raise Forbidden(f"upstream host {host!r} has no usable address")
        ips: list[IPAddress] = []
        for address in addresses:
            try:
                ips.append(ipaddress.ip_address(address))
            except ValueError:
                # Even for a listed host: the result becomes the URL's host,
                # and a name there would be looked up again by httpx.
                log.debug("refusing %s: resolver returned %r", host, address)
                raise Forbidden(f"upstream host {host!r} has no usable address") from None
        if not self.restricted:
            for ip in ips:
                reason = forbidden_reason(ip)
                if reason is not None:
                    log.debug("refusing %s: %s is %s", host, ip, reason)
                    raise Forbidden(
                        f"upstream host {host!r} resolves to a non-public address; to play from a "
                        f"trusted LAN or loopback host, list it in sources.url.allow_hosts",
                        setting="sources.url.allow_hosts",
                    )
        # Listed hosts are trusted wherever they point; otherwise every
        # address passed, so the resolver's first choice is as good as any.
        return str(ips[0])
