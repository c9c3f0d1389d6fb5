"""Tests for gateway.sources.netpolicy: the pure address and URL policy (no I/O)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import BadRequest, Forbidden
from gateway.sources import netpolicy
from gateway.sources.netpolicy import HostPolicy, ParsedURL, forbidden_reason, parse_url


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def _teredo(server: str, client: str) -> str:
    """A Teredo address (RFC 4380): 2001:0:<server>:<flags>:<port>:<client XOR ~0>."""
    s = int(ipaddress.IPv4Address(server))
    c = int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF
    value = (0x20010000 << 96) | (s << 64) | (0x8000 << 48) | (0x63BF << 32) | c
    return str(ipaddress.IPv6Address(value))


def test_all_is_complete() -> None:
    for name in netpolicy.__all__:
        assert hasattr(netpolicy, name)


# -- forbidden_reason ------------------------------------------------------

FORBIDDEN = [
    # (address, expected word in the reason)
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.5.4", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("169.254.169.254", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "this-network"),
    ("255.255.255.255", "broadcast"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("192.0.0.8", "IETF"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("100::1", "discard-only"),
    # IPv4-mapped ::ffff:0:0/96
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped private"),
    ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
    ("::ffff:0.0.0.0", "IPv4-mapped unspecified"),
    # IPv4-compatible ::/96
    ("::127.0.0.1", "IPv4-compatible embeds loopback"),
    ("::10.0.0.1", "IPv4-compatible embeds private"),
    # NAT64 well-known prefix 64:ff9b::/96
    ("64:ff9b::127.0.0.1", "NAT64 loopback"),
    ("64:ff9b::a00:1", "NAT64 private"),
    ("64:ff9b::100.64.0.1", "NAT64 carrier-grade NAT"),
    # NAT64 local-use prefix 64:ff9b:1::/48, /96 and /48 layouts (RFC 6052)
    ("64:ff9b:1::127.0.0.1", "NAT64 embeds loopback"),
    ("64:ff9b:1:7f00:0:100::", "NAT64 embeds"),
    # 6to4 2002::/16, IPv4 in bits 16-48
    ("2002:7f00:1::1", "6to4 embeds loopback"),
    ("2002:a9fe:a9fe::1", "6to4 embeds link-local"),
    ("2002:c0a8:101::", "6to4 embeds private"),
    # Teredo 2001::/32: client = last 32 bits XOR 0xffffffff, and the server
    (_teredo("8.8.8.8", "127.0.0.1"), "Teredo client embeds loopback"),
    (_teredo("8.8.8.8", "10.0.0.1"), "Teredo client embeds private"),
    (_teredo("192.168.0.1", "8.8.8.8"), "Teredo server embeds private"),
]


@pytest.mark.parametrize(("address", "word"), FORBIDDEN)
def test_forbidden_addresses(address: str, word: str) -> None:
    reason = forbidden_reason(_ip(address))
    assert reason is not None, address
    assert word in reason, (address, reason)


PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.32.0.1",  # just above 172.16/12
    "2606:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",  # IPv4-mapped public: same as 8.8.8.8
    "64:ff9b::808:808",  # DNS64 answer for a public IPv4-only host
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address: str) -> None:
    assert forbidden_reason(_ip(address)) is None


def test_teredo_is_refused_even_with_public_embeddings() -> None:
    # 2001::/32 sits in 2001::/23, which the registry marks non-global.
    assert forbidden_reason(_ip(_teredo("8.8.8.8", "1.1.1.1"))) is not None


v4_addresses = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)


@given(v4_addresses)
def test_mapped_and_nat64_follow_the_ipv4_verdict(v4: ipaddress.IPv4Address) -> None:
    plain = forbidden_reason(v4) is None
    mapped = ipaddress.IPv6Address((0xFFFF << 32) | int(v4))
    nat64 = ipaddress.IPv6Address((0x64FF9B << 96) | int(v4))
    assert (forbidden_reason(mapped) is None) == plain
    assert (forbidden_reason(nat64) is None) == plain


@given(v4_addresses, st.integers(min_value=0, max_value=2**80 - 1))
def test_embedded_forbidden_ipv4_is_always_refused(v4: ipaddress.IPv4Address, rest: int) -> None:
    if forbidden_reason(v4) is None:
        return
    embeddings = [
        ipaddress.IPv6Address(int(v4)),  # IPv4-compatible
        ipaddress.IPv6Address((0x2002 << 112) | (int(v4) << 80) | (rest & (2**80 - 1))),  # 6to4
        ipaddress.IPv6Address((0x20010000 << 96) | (rest & (2**64 - 1)) << 32 | (int(v4) ^ 0xFFFFFFFF)),
        ipaddress.IPv6Address((0x20010000 << 96) | (int(v4) << 64) | (rest & (2**64 - 1))),  # Teredo server
        ipaddress.IPv6Address((0x64FF9B0001 << 88) | int(v4)),  # NAT64 local-use, /96
    ]
    for address in embeddings:
        assert forbidden_reason(address) is not None, address


@given(st.sampled_from([n for _, n in netpolicy._V4_NETWORKS]), st.integers(min_value=0))
def test_every_address_of_the_v4_tables_is_refused(network: ipaddress.IPv4Network, offset: int) -> None:
    address = network[offset % network.num_addresses]
    assert forbidden_reason(address) is not None


# -- parse_url -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/a.mp3", ParsedURL("http", "example.com", 80, "http://example.com/a.mp3")),
        ("HTTP://Example.COM/a?b=1#frag", ParsedURL("http", "example.com", 80, "http://example.com/a?b=1")),
        ("https://cdn.example:8443/x", ParsedURL("https", "cdn.example", 8443, "https://cdn.example:8443/x")),
        ("https://cdn.example:443/x", ParsedURL("https", "cdn.example", 443, "https://cdn.example/x")),
        ("http://example.com.:80/", ParsedURL("http", "example.com", 80, "http://example.com/")),
        ("http://[0:0::1]:8080/p", ParsedURL("http", "::1", 8080, "http://[::1]:8080/p")),
        ("http://127.0.0.1:8123/", ParsedURL("http", "127.0.0.1", 8123, "http://127.0.0.1:8123/")),
        ("https://bücher.de/", ParsedURL("https", "xn--bcher-kva.de", 443, "https://xn--bcher-kva.de/")),
        ("http://a_b.example/", ParsedURL("http", "a_b.example", 80, "http://a_b.example/")),
    ],
)
def test_parse_url_accepts(url: str, expected: ParsedURL) -> None:
    assert parse_url(url) == expected


def test_parsed_url_netloc() -> None:
    assert parse_url("http://x.example/").netloc == "x.example"
    assert parse_url("http://x.example:8080/").netloc == "x.example:8080"
    assert parse_url("https://[::1]:8443/").netloc == "[::1]:8443"
    assert parse_url("https://[::1]/").netloc == "[::1]"


@pytest.mark.parametrize(
    "url",
    [
        # schemes
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/_x",
        "ftp://example.com/a.mp3",
        "data:audio/mpeg;base64,AAAA",
        "javascript:alert(1)",
        "ws://example.com/",
        "//example.com/a.mp3",
        "example.com/a.mp3",
        "",
        # host missing
        "http:///a.mp3",
        "http:/a.mp3",
        "http://:80/",
        # userinfo
        "http://user@example.com/",
        "http://user:pw@example.com/",
        "http://:pw@example.com/",
        "http://@example.com/",
        "http://127.0.0.1:80@127.0.0.1:81/",
        "http://example.com\\@127.0.0.1/",
        # numeric host spellings that inet_aton would read as an address
        "http://0/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0x7f000001/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://1.2.3.4.5/",
        "http://example.0x10/",
        # malformed hosts and ports
        "http://a b/",
        "http://exa%6dple.com/",
        "http://a..b/",
        "http://" + "a" * 64 + ".example/",
        "http://[::1/",
        "http://[fe80::1%25eth0]/",
        "http://[zz::1]/",
        "http://example.com:99999/",
        "http://example.com:0/",
        "http://example.com:-1/",
        "http://example.com:+80/",
        "http://example.com:8_0/",
        "http://example.com:\u0668\u0660/",
        "http://example.com:abc/",
        "http://exam\nple.com/",
        "not a url at all",
    ],
)
def test_parse_url_refuses(url: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_url(url)
    assert info.value.code == "bad_url"
    assert info.value.status == 400


def test_parse_url_refuses_non_strings() -> None:
    with pytest.raises(BadRequest):
        parse_url(None)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        parse_url(b"http://example.com/")  # type: ignore[arg-type]


@given(st.text(max_size=60))
def test_parse_url_raises_only_bad_request(text: str) -> None:
    for url in (text, "http://" + text, "https://" + text + "/x"):
        try:
            parse_url(url)
        except BadRequest as exc:
            assert exc.code == "bad_url"


# -- HostPolicy ------------------------------------------------------------


def test_empty_policy_allows_public_and_refuses_private() -> None:
    policy = HostPolicy()
    assert not policy.restricted
    assert not policy.is_listed("example.com", 80)
    assert policy.check("example.com", 80, ["93.184.216.34", "2606:2800:220:1::1"]) == "93.184.216.34"
    with pytest.raises(Forbidden) as info:
        # ANY non-public address refuses the host, not just the first.
        policy.check("example.com", 80, ["93.184.216.34", "10.0.0.1"])
    assert info.value.code == "upstream_forbidden"
    assert "example.com" in info.value.detail
    assert "10.0.0.1" not in info.value.detail


@pytest.mark.parametrize("addresses", [[], ["not-an-ip"], ["127.0.0.1", "localhost"]])
def test_unusable_addresses_are_refused(addresses: list[str]) -> None:
    for policy in (HostPolicy(), HostPolicy(["x.example"])):
        with pytest.raises(Forbidden):
            policy.check("x.example", 80, addresses)


def test_listed_hosts_may_be_private() -> None:
    policy = HostPolicy(["music.lan", "127.0.0.1:8123"])
    assert policy.restricted
    assert policy.check("music.lan", 80, ["192.168.1.20"]) == "192.168.1.20"
    assert policy.check("127.0.0.1", 8123, ["127.0.0.1"]) == "127.0.0.1"


def test_unlisted_hosts_are_refused_when_restricted() -> None:
    policy = HostPolicy(["music.lan"])
    for host, port in [("other.example", 80), ("127.0.0.1", 80), ("music.lan.evil", 80)]:
        with pytest.raises(Forbidden) as info:
            policy.check(host, port, ["93.184.216.34"])
        assert info.value.code == "host_not_allowed"
        with pytest.raises(Forbidden):
            policy.check_host(host, port)


@pytest.mark.parametrize(
    ("entry", "host", "port", "listed"),
    [
        ("music.example", "music.example", 80, True),
        ("music.example", "music.example", 8443, True),
        ("Music.Example.", "music.example", 80, True),
        ("music.example:8080", "music.example", 8080, True),
        ("music.example:8080", "music.example", 8081, False),
        ("music.example:8080", "music.example", 80, False),
        ("music.example:80", "music.example", 80, True),
        ("music.example:443", "music.example", 443, True),
        ("music.example", "sub.music.example", 80, False),
        ("127.0.0.1:8123", "127.0.0.1", 8123, True),
        ("127.0.0.1:8123", "127.0.0.1", 8124, False),
        ("127.0.0.1", "127.0.0.1", 1, True),
        ("[::1]:8080", "::1", 8080, True),
        ("[::1]:8080", "::1", 8081, False),
        ("::1", "::1", 8081, True),
        ("[::1]", "::1", 8081, True),
        ("[0:0::1]:8080", "::1", 8080, True),
        ("bücher.de", "xn--bcher-kva.de", 443, True),
    ],
)
def test_allow_host_matching(entry: str, host: str, port: int, listed: bool) -> None:
    assert HostPolicy([entry]).is_listed(host, port) is listed


def test_allow_host_matching_uses_the_url_form() -> None:
    # Default ports come from the scheme, via parse_url.
    policy = HostPolicy(["a.example:443", "b.example:80"])
    https = parse_url("https://a.example/x")
    http = parse_url("http://b.example/x")
    assert policy.is_listed(https.host, https.port)
    assert policy.is_listed(http.host, http.port)
    assert not policy.is_listed(*_host_port("http://a.example/x"))


def _host_port(url: str) -> tuple[str, int]:
    parsed = parse_url(url)
    return parsed.host, parsed.port


@pytest.mark.parametrize(
    "entry",
    ["", ":80", "a:b", "a:", "a:0", "a:65536", "[::1", "[::1]x", "[::1]:", "127.1", "a b", "user@a", "[nope]"],
)
def test_bad_allow_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        HostPolicy([entry])


def test_allow_hosts_must_not_be_a_bare_string() -> None:
    with pytest.raises(TypeError):
        HostPolicy("music.example")
