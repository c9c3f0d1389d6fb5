"""Tests for gateway.sources.fetch: the SSRF-safe upstream fetcher.

Every upstream here is a server on 127.0.0.1 (or 127.0.0.2) started by the
test. Resolvers are injected, so no test ever sends a DNS query or contacts
anything beyond loopback. A "canary" listener counts every connection it
accepts: where a fetch must be refused, the canary must stay at zero.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    TooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.sources import fetch
from gateway.sources.fetch import Resolver, SafeFetcher

# -- servers ---------------------------------------------------------------


@dataclass
class RawServer:
    """A plain asyncio TCP server that counts connections (canary, misbehaving upstreams)."""

    host: str
    port: int
    server: asyncio.Server
    connections: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def close(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        for writer in self.writers:
            try:
                await writer.wait_closed()
            except OSError:
                pass
        await self.server.wait_closed()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def start_raw(handler: Handler, host: str = "127.0.0.1", port: int = 0) -> RawServer:
    box: list[RawServer] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = box[0]
        raw.connections += 1
        raw.writers.append(writer)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, host, port)
    raw = RawServer(host, server.sockets[0].getsockname()[1], server)
    box.append(raw)
    return raw


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Canary behaviour: accept, then close at once."""


async def _never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(3600)


async def _headers_then_silence(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    await writer.drain()
    await asyncio.sleep(3600)


async def _short_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    await writer.drain()


@pytest.fixture
async def canary() -> AsyncIterator[RawServer]:
    raw = await start_raw(_hang_up)
    yield raw
    await raw.close()


async def _ok(request: web.Request) -> web.Response:
    return web.Response(body=b"hello", content_type="text/plain")


async def _audio(request: web.Request) -> web.Response:
    return web.Response(body=b"a" * 1000, content_type="audio/mpeg")


async def _chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for _ in range(int(request.query.get("n", "10"))):
            await response.write(b"c" * 10_000)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client gave up, as it should
    return response


async def _status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="nope")


async def _headers(request: web.Request) -> web.Response:
    return web.json_response({k.lower(): v for k, v in request.headers.items()})


async def _set_cookie(request: web.Request) -> web.Response:
    response = web.Response(text="cookie set")
    response.set_cookie("session", "secret")
    return response


async def _chain(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    if n == 0:
        return web.Response(text="end of chain")
    status = (301, 302, 303, 307, 308)[n % 5]
    # A relative Location, resolved against /chain/<n>.
    return web.Response(status=status, headers={"Location": str(n - 1)})


async def _to(request: web.Request) -> web.Response:
    headers = {}
    if "location" in request.query:
        headers["Location"] = request.query["location"]
    return web.Response(status=int(request.query.get("status", "302")), headers=headers)


@dataclass
class Upstream:
    port: int
    hits: list[str]

    def url(self, path: str = "/ok", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @property
    def entry(self) -> str:
        return f"127.0.0.1:{self.port}"


@web.middleware
async def _record(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    request.app[HITS].append(request.path_qs)
    return await handler(request)


HITS = web.AppKey("hits", list[str])


async def _start_app(ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int, list[str]]:
    app = web.Application(middlewares=[_record])
    app[HITS] = []
    app.router.add_get("/ok", _ok)
    app.router.add_get("/audio", _audio)
    app.router.add_get("/chunked", _chunked)
    app.router.add_get("/status/{code}", _status)
    app.router.add_get("/headers", _headers)
    app.router.add_get("/setcookie", _set_cookie)
    app.router.add_get("/chain/{n}", _chain)
    app.router.add_get("/to", _to)
    runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    return runner, runner.addresses[0][1], app[HITS]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    runner, port, hits = await _start_app()
    yield Upstream(port, hits)
    await runner.cleanup()


FetcherFactory = Callable[..., SafeFetcher]


@pytest.fixture
async def make_fetcher() -> AsyncIterator[FetcherFactory]:
    made: list[SafeFetcher] = []

    def factory(**kwargs: Any) -> SafeFetcher:
        fetcher = SafeFetcher(**kwargs)
        made.append(fetcher)
        return fetcher

    yield factory
    for fetcher in made:
        await fetcher.aclose()


def table_resolver(table: dict[str, list[str]], calls: list[tuple[str, int]] | None = None) -> Resolver:
    """A resolver that answers from ``table`` and fails for anything else (no DNS)."""

    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append((host, port))
        if host not in table:
            raise OSError(f"test resolver: unknown host {host}")
        return list(table[host])

    return resolve


LOCAL_TABLE = {"localhost": ["127.0.0.1", "::1"]}


async def _drain(fetcher: SafeFetcher, url: str, max_bytes: int = 1 << 20) -> bytes:
    _, body = await fetcher.get_bytes(url, max_bytes=max_bytes)
    return body


# -- basics ----------------------------------------------------------------


def test_all_is_complete() -> None:
    for name in fetch.__all__:
        assert hasattr(fetch, name)


async def test_fetch_from_allowed_upstream(upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry])
    assert await fetcher.check_url(upstream.url("/ok#frag")) == upstream.url("/ok")
    response, body = await fetcher.get_bytes(upstream.url("/audio"), max_bytes=1000)
    assert body == b"a" * 1000
    assert response.status == 200
    assert response.url == upstream.url("/audio")
    assert response.content_length == 1000
    assert response.bytes_read == 1000
    assert response.headers["CONTENT-TYPE"] == "audio/mpeg"


async def test_request_headers(upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry], user_agent="ztream-test/1")
    body = await _drain(fetcher, upstream.url("/headers"))
    seen = json.loads(body)
    assert seen["host"] == upstream.entry
    assert seen["user-agent"] == "ztream-test/1"
    assert seen["accept-encoding"] == "identity"


async def test_caller_cannot_override_host(upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry])
    _, body = await fetcher.get_bytes(upstream.url("/headers"), max_bytes=10_000, headers={"host": "evil.example", "Range": "bytes=0-"})
    seen = json.loads(body)
    assert seen["host"] == upstream.entry
    assert seen["range"] == "bytes=0-"


async def test_cookies_are_never_kept(upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry])
    assert await _drain(fetcher, upstream.url("/setcookie")) == b"cookie set"
    seen = json.loads(await _drain(fetcher, upstream.url("/headers")))
    assert "cookie" not in seen


def test_bad_allow_hosts_fail_at_construction() -> None:
    with pytest.raises(ValueError):
        SafeFetcher(allow_hosts=["a:notaport"])


# -- SSRF: spellings, tricks, schemes --------------------------------------


def loopback_spellings(canary: int, good: int) -> list[str]:
    return [
        f"http://localhost:{canary}/",
        f"http://LOCALHOST:{canary}/",
        f"http://localhost.:{canary}/",
        f"http://[::1]:{canary}/",
        f"http://0:{canary}/",
        f"http://2130706433:{canary}/",
        f"http://0x7f.1:{canary}/",
        f"http://0x7f000001:{canary}/",
        f"http://127.1:{canary}/",
        f"http://0177.0.0.1:{canary}/",
        f"http://[::ffff:127.0.0.1]:{canary}/",
        f"http://[::ffff:7f00:1]:{canary}/",
        f"http://127.0.0.1:{canary}/",
        f"http://127.0.0.1.:{canary}/",
        f"https://127.0.0.1:{canary}/",
        f"http://0.0.0.0:{canary}/",
        f"http://[::]:{canary}/",
        f"http://[64:ff9b::127.0.0.1]:{canary}/",
        f"http://[2002:7f00:1::1]:{canary}/",
        # userinfo and fragment tricks
        f"http://127.0.0.1:{good}@127.0.0.1:{canary}/",
        f"http://127.0.0.1:{good}\\@127.0.0.1:{canary}/",
        f"http://@127.0.0.1:{canary}/",
        f"http://127.0.0.1:{canary}#@127.0.0.1:{good}",
        f"http://127.0.0.1:{canary}?@127.0.0.1:{good}/",
        # other schemes
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{canary}/_GET%20/",
        f"ftp://127.0.0.1:{canary}/",
        f"dict://127.0.0.1:{canary}/",
        f"ws://127.0.0.1:{canary}/",
        "data:text/plain,hello",
    ]


async def _assert_refused(fetcher: SafeFetcher, url: str) -> None:
    for attempt in (
        fetcher.check_url(url),
        fetcher.get_bytes(url, max_bytes=1000),
        _enter_stream(fetcher, url),
    ):
        with pytest.raises((BadRequest, Forbidden)):
            await attempt


async def _enter_stream(fetcher: SafeFetcher, url: str) -> None:
    async with fetcher.stream(url, max_bytes=1000):
        pass


async def test_canary_counts_when_reached(canary: RawServer, make_fetcher: FetcherFactory) -> None:
    # Positive control: a listed canary is contacted, so 0 elsewhere means something.
    fetcher = make_fetcher(allow_hosts=[f"127.0.0.1:{canary.port}"])
    with pytest.raises(UpstreamError):
        await fetcher.get_bytes(f"http://127.0.0.1:{canary.port}/", max_bytes=1000)
    assert canary.connections == 1


async def test_loopback_spellings_with_allow_list(canary: RawServer, upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry], resolver=table_resolver(LOCAL_TABLE))
    for url in loopback_spellings(canary.port, upstream.port):
        await _assert_refused(fetcher, url)
    assert canary.connections == 0
    assert upstream.hits == []


async def test_loopback_spellings_without_allow_list(canary: RawServer, upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    # Empty allow-list: every spelling must be caught by the address policy
    # (or refused as a URL), including names that resolve to loopback.
    fetcher = make_fetcher(resolver=table_resolver(LOCAL_TABLE))
    for url in loopback_spellings(canary.port, upstream.port):
        await _assert_refused(fetcher, url)
    assert canary.connections == 0
    assert upstream.hits == []


async def test_real_resolver_localhost_is_refused(canary: RawServer, make_fetcher: FetcherFactory) -> None:
    # The default resolver (getaddrinfo; "localhost" comes from /etc/hosts).
    fetcher = make_fetcher()
    with pytest.raises(Forbidden):
        await fetcher.check_url(f"http://localhost:{canary.port}/")
    assert canary.connections == 0


async def test_public_name_resolving_to_loopback(canary: RawServer, make_fetcher: FetcherFactory) -> None:
    calls: list[tuple[str, int]] = []
    fetcher = make_fetcher(resolver=table_resolver({"music.example": ["127.0.0.1"]}, calls))
    url = f"http://music.example:{canary.port}/a.mp3"
    with pytest.raises(Forbidden) as info:
        await fetcher.check_url(url)
    assert info.value.code == "upstream_forbidden"
    assert "music.example" in info.value.detail
    assert "127.0.0.1" not in info.value.detail
    with pytest.raises(Forbidden):
        await fetcher.get_bytes(url, max_bytes=1000)
    assert canary.connections == 0
    assert calls == [("music.example", canary.port)] * 2


async def test_any_private_address_refuses_the_host(make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(resolver=table_resolver({"music.example": ["93.184.216.34", "10.0.0.7"]}))
    with pytest.raises(Forbidden):
        await fetcher.check_url("https://music.example/a.mp3")


async def test_public_name_resolving_to_public_address_passes_check(make_fetcher: FetcherFactory) -> None:
    # Only check_url: nothing connects to the public address.
    fetcher = make_fetcher(resolver=table_resolver({"music.example": ["93.184.216.34", "2606:2800:220:1::1"]}))
    assert await fetcher.check_url("https://Music.Example/a.mp3#t=10") == "https://music.example/a.mp3"


async def test_unlisted_host_is_not_even_resolved(make_fetcher: FetcherFactory) -> None:
    calls: list[tuple[str, int]] = []
    fetcher = make_fetcher(allow_hosts=["music.example"], resolver=table_resolver({}, calls))
    with pytest.raises(Forbidden) as info:
        await fetcher.check_url("https://other.example/a.mp3")
    assert info.value.code == "host_not_allowed"
    assert calls == []


async def test_resolver_failures(make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(resolver=table_resolver({}))
    with pytest.raises(UpstreamError) as info:
        await fetcher.check_url("https://nowhere.example/")
    assert type(info.value) is UpstreamError

    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(3600)
        return []

    fetcher = make_fetcher(resolver=slow, connect_timeout=0.2)
    with pytest.raises(UpstreamTimeout):
        await fetcher.check_url("https://slow.example/")


async def test_proxy_environment_is_ignored(
    canary: RawServer, upstream: Upstream, make_fetcher: FetcherFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = f"http://127.0.0.1:{canary.port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    fetcher = make_fetcher(allow_hosts=[upstream.entry])
    assert await _drain(fetcher, upstream.url("/ok")) == b"hello"
    assert canary.connections == 0
    assert upstream.hits == ["/ok"]


# -- connect to the address that was checked -------------------------------


async def test_connects_to_the_checked_address(upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    # A second server on 127.0.0.2, same port: if the fetcher looked the
    # name up again (or cached an old answer), we would see it here.
    # (All of 127.0.0.0/8 is loopback on Linux, so this stays on the host.)
    other = await start_raw(_hang_up, host="127.0.0.2", port=upstream.port)
    try:
        calls: list[tuple[str, int]] = []
        answers = iter([["127.0.0.1"]])

        async def rebinding(host: str, port: int) -> list[str]:
            calls.append((host, port))
            return next(answers, ["127.0.0.2"])

        fetcher = make_fetcher(allow_hosts=["music.example"], resolver=rebinding)
        url = f"http://music.example:{upstream.port}/headers"
        response, body = await fetcher.get_bytes(url, max_bytes=10_000)
        assert calls == [("music.example", upstream.port)]  # once per request
        assert json.loads(body)["host"] == f"music.example:{upstream.port}"
        assert response.url == url  # the name, not the IP
        assert upstream.hits == ["/headers"]
        assert other.connections == 0

        # The next request resolves again, gets 127.0.0.2, and goes there.
        with pytest.raises(UpstreamError):
            await fetcher.get_bytes(url, max_bytes=10_000)
        assert len(calls) == 2
        assert other.connections == 1
        assert upstream.hits == ["/headers"]
    finally:
        await other.close()


# -- https: SNI and certificate checks use the name ------------------------


@dataclass
class TLSFiles:
    server: ssl.SSLContext
    client: ssl.SSLContext
    sni_seen: list[str | None]


@pytest.fixture(scope="module")
def tls_material() -> tuple[bytes, bytes, bytes]:
    """A throwaway CA and a leaf certificate for music.example only."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ztream test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "music.example")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("music.example")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca_cert.public_bytes(pem), leaf_cert.public_bytes(pem), key_pem


@pytest.fixture
async def tls_upstream(tls_material: tuple[bytes, bytes, bytes], tmp_path: Any) -> AsyncIterator[tuple[int, TLSFiles]]:
    ca_pem, cert_pem, key_pem = tls_material
    (tmp_path / "leaf.pem").write_bytes(cert_pem + key_pem)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "leaf.pem")
    seen: list[str | None] = []
    server.sni_callback = lambda sslobj, name, ctx: seen.append(name)  # type: ignore[assignment,misc]
    client = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    runner, port, _ = await _start_app(ssl_context=server)
    yield port, TLSFiles(server, client, seen)
    await runner.cleanup()


async def test_https_uses_name_for_sni_and_certificate(tls_upstream: tuple[int, TLSFiles], make_fetcher: FetcherFactory) -> None:
    port, tls = tls_upstream
    resolver = table_resolver({"music.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    fetcher = make_fetcher(allow_hosts=["music.example", "other.example", f"127.0.0.1:{port}"], resolver=resolver, ssl_context=tls.client)

    _, body = await fetcher.get_bytes(f"https://music.example:{port}/headers", max_bytes=10_000)
    assert json.loads(body)["host"] == f"music.example:{port}"
    assert tls.sni_seen == ["music.example"]

    # Same IP and port, but a name the certificate does not cover: the
    # handshake must be redone and fail, not ride on the verified connection.
    with pytest.raises(UpstreamError):
        await fetcher.get_bytes(f"https://other.example:{port}/headers", max_bytes=10_000)
    assert tls.sni_seen == ["music.example", "other.example"]

    # The IP literal is not in the certificate either.
    with pytest.raises(UpstreamError):
        await fetcher.get_bytes(f"https://127.0.0.1:{port}/headers", max_bytes=10_000)

    # And the verified name still works on a fresh connection.
    _, body = await fetcher.get_bytes(f"https://music.example:{port}/ok", max_bytes=10_000)
    assert body == b"hello"


async def test_https_with_default_trust_store_refuses_unknown_ca(
    tls_upstream: tuple[int, TLSFiles], make_fetcher: FetcherFactory
) -> None:
    port, _ = tls_upstream
    fetcher = make_fetcher(allow_hosts=["music.example"], resolver=table_resolver({"music.example": ["127.0.0.1"]}))
    with pytest.raises(UpstreamError) as info:
        await fetcher.get_bytes(f"https://music.example:{port}/ok", max_bytes=10_000)
    assert info.value.code == "upstream_failed"


# -- redirects -------------------------------------------------------------


async def test_redirect_chain_of_five_is_followed(upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry])
    response, body = await fetcher.get_bytes(upstream.url("/chain/5"), max_bytes=1000)
    assert body == b"end of chain"
    assert response.url == upstream.url("/chain/0")
    assert upstream.hits == [f"/chain/{n}" for n in range(5, -1, -1)]


async def test_six_redirects_are_too_many(upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry])
    with pytest.raises(UpstreamError) as info:
        await fetcher.get_bytes(upstream.url("/chain/6"), max_bytes=1000)
    assert info.value.code == "too_many_redirects"
    assert len(upstream.hits) == 6  # the 7th URL is never requested


async def test_max_redirects_is_configurable(upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry], max_redirects=0)
    with pytest.raises(UpstreamError) as info:
        await fetcher.get_bytes(upstream.url("/chain/1"), max_bytes=1000)
    assert info.value.code == "too_many_redirects"


async def test_relative_and_scheme_relative_locations(upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry])
    for location in ("../ok", "/ok", f"//127.0.0.1:{upstream.port}/ok", "ok#ignored"):
        _, body = await fetcher.get_bytes(upstream.url(f"/to?location={_q(location)}"), max_bytes=1000)
        assert body == b"hello", location


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{canary}/",
        "http://localhost:{canary}/",
        "http://[::ffff:127.0.0.1]:{canary}/",
        "http://0x7f.1:{canary}/",
        "http://rebind.example:{canary}/",
        "//127.0.0.1:{canary}/",
        "http://127.0.0.1:{good}@127.0.0.1:{canary}/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{canary}/_x",
    ],
)
async def test_redirect_to_canary_is_refused(
    target: str, canary: RawServer, upstream: Upstream, make_fetcher: FetcherFactory
) -> None:
    calls: list[tuple[str, int]] = []
    resolver = table_resolver({**LOCAL_TABLE, "rebind.example": ["127.0.0.1"]}, calls)
    fetcher = make_fetcher(allow_hosts=[upstream.entry], resolver=resolver)
    location = target.format(canary=canary.port, good=upstream.port)
    with pytest.raises((Forbidden, BadRequest)):
        await fetcher.get_bytes(upstream.url(f"/to?location={_q(location)}"), max_bytes=1000)
    assert canary.connections == 0
    assert calls == []  # unlisted names are refused before any lookup
    assert len(upstream.hits) == 1


async def test_redirect_hops_are_resolved_and_checked(
    canary: RawServer, upstream: Upstream, make_fetcher: FetcherFactory
) -> None:
    # Both names listed for the good port only; each hop is looked up once.
    calls: list[tuple[str, int]] = []
    resolver = table_resolver({"a.example": ["127.0.0.1"], "b.example": ["127.0.0.1"]}, calls)
    fetcher = make_fetcher(allow_hosts=[f"a.example:{upstream.port}", f"b.example:{upstream.port}"], resolver=resolver)
    hop = f"http://b.example:{upstream.port}/ok"
    _, body = await fetcher.get_bytes(f"http://a.example:{upstream.port}/to?location={_q(hop)}", max_bytes=1000)
    assert body == b"hello"
    assert calls == [("a.example", upstream.port), ("b.example", upstream.port)]

    # b.example on the canary's port is not listed: refused, never resolved.
    hop = f"http://b.example:{canary.port}/"
    with pytest.raises(Forbidden) as info:
        await fetcher.get_bytes(f"http://a.example:{upstream.port}/to?location={_q(hop)}", max_bytes=1000)
    assert info.value.code == "host_not_allowed"
    assert calls[2:] == [("a.example", upstream.port)]
    assert canary.connections == 0


async def test_credentials_do_not_follow_cross_origin_redirects(upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    resolver = table_resolver({"music.example": ["127.0.0.1"]})
    fetcher = make_fetcher(allow_hosts=[upstream.entry, "music.example"], resolver=resolver)
    headers = {"Authorization": "Bearer secret", "X-Keep": "1"}

    same = upstream.url(f"/to?location={_q('/headers')}")
    _, body = await fetcher.get_bytes(same, max_bytes=10_000, headers=headers)
    assert json.loads(body)["authorization"] == "Bearer secret"

    other = upstream.url(f"/to?location={_q(f'http://music.example:{upstream.port}/headers')}")
    _, body = await fetcher.get_bytes(other, max_bytes=10_000, headers=headers)
    seen = json.loads(body)
    assert "authorization" not in seen
    assert seen["x-keep"] == "1"
    assert seen["host"] == f"music.example:{upstream.port}"


async def test_redirect_without_location(upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry])
    with pytest.raises(UpstreamError):
        await fetcher.get_bytes(upstream.url("/to"), max_bytes=1000)


@pytest.mark.parametrize("status", [300, 304])
async def test_other_3xx_are_returned_not_followed(status: int, upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry])
    response, _ = await fetcher.get_bytes(upstream.url(f"/to?status={status}&location=/ok"), max_bytes=1000)
    assert response.status == status
    assert upstream.hits == [f"/to?status={status}&location=/ok"]


# -- statuses, sizes, failures ---------------------------------------------


@pytest.mark.parametrize("status", [404, 410])
async def test_not_found(status: int, upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry])
    with pytest.raises(NotFound) as info:
        await fetcher.get_bytes(upstream.url(f"/status/{status}"), max_bytes=1000)
    assert info.value.code == "upstream_not_found"


@pytest.mark.parametrize("status", [400, 401, 403, 429, 500, 503])
async def test_error_status(status: int, upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry])
    with pytest.raises(UpstreamError) as info:
        await fetcher.get_bytes(upstream.url(f"/status/{status}"), max_bytes=1000)
    assert info.value.code == "upstream_status"
    assert str(status) in info.value.detail
    assert info.value.status == 502


async def test_too_large_by_content_length(upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry])
    with pytest.raises(TooLarge):
        async with fetcher.stream(upstream.url("/audio"), max_bytes=999):
            pytest.fail("the body must not be offered")
    # Exactly at the limit is fine.
    _, body = await fetcher.get_bytes(upstream.url("/audio"), max_bytes=1000)
    assert len(body) == 1000


async def test_too_large_while_streaming(upstream: Upstream, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry])
    received = 0
    async with fetcher.stream(upstream.url("/chunked?n=100"), max_bytes=55_000) as response:
        assert response.content_length is None
        with pytest.raises(TooLarge):
            async for chunk in response.aiter_bytes():
                received += len(chunk)
    assert received <= 55_000
    assert response.bytes_read > 55_000
    assert response.bytes_read < 1_000_000  # stopped early, not at the end

    _, body = await fetcher.get_bytes(upstream.url("/chunked?n=5"), max_bytes=50_000)
    assert len(body) == 50_000


async def test_body_shorter_than_content_length(make_fetcher: FetcherFactory) -> None:
    raw = await start_raw(_short_body)
    try:
        fetcher = make_fetcher(allow_hosts=[f"127.0.0.1:{raw.port}"])
        with pytest.raises(UpstreamError) as info:
            await fetcher.get_bytes(f"http://127.0.0.1:{raw.port}/", max_bytes=1000)
        assert type(info.value) is UpstreamError
    finally:
        await raw.close()


async def test_server_that_never_answers(make_fetcher: FetcherFactory) -> None:
    raw = await start_raw(_never_answer)
    try:
        fetcher = make_fetcher(allow_hosts=[f"127.0.0.1:{raw.port}"], read_timeout=0.3)
        with pytest.raises(UpstreamTimeout) as info:
            await fetcher.get_bytes(f"http://127.0.0.1:{raw.port}/", max_bytes=1000)
        assert info.value.status == 504
    finally:
        await raw.close()


async def test_body_that_stalls(make_fetcher: FetcherFactory) -> None:
    raw = await start_raw(_headers_then_silence)
    try:
        fetcher = make_fetcher(allow_hosts=[f"127.0.0.1:{raw.port}"], read_timeout=0.3)
        async with fetcher.stream(f"http://127.0.0.1:{raw.port}/", max_bytes=1000) as response:
            with pytest.raises(UpstreamTimeout):
                async for _ in response.aiter_bytes():
                    pass
        assert response.bytes_read == 3
    finally:
        await raw.close()


async def test_connection_refused(make_fetcher: FetcherFactory) -> None:
    raw = await start_raw(_hang_up)
    port = raw.port
    await raw.close()
    fetcher = make_fetcher(allow_hosts=[f"127.0.0.1:{port}"])
    with pytest.raises(UpstreamError) as info:
        await fetcher.get_bytes(f"http://127.0.0.1:{port}/", max_bytes=1000)
    assert type(info.value) is UpstreamError


# -- open(): statuses kept, single hops ---------------------------------------------


async def test_open_hands_back_statuses_and_single_hops(
    upstream: Upstream, canary: RawServer, make_fetcher: FetcherFactory
) -> None:
    fetcher = make_fetcher(allow_hosts=[upstream.entry])
    async with fetcher.open(upstream.url("/status/404"), max_bytes=1000) as response:
        assert response.status == 404  # no NotFound raised: the caller reads it
    # A redirect left unfollowed is returned as it is, even one to the canary.
    location = _q(f"http://127.0.0.1:{canary.port}/")
    async with fetcher.open(upstream.url(f"/to?location={location}"), max_bytes=1000,
                            follow_redirects=False) as response:
        assert response.status == 302 and response.headers["location"].endswith(f":{canary.port}/")
    async with fetcher.open(upstream.url("/chain/2"), max_bytes=1000) as response:
        assert response.status == 200  # followed like stream()
    # Anything but a bodiless GET is one hop, checked like the others.
    with pytest.raises(Forbidden):
        async with fetcher.open(f"http://127.0.0.1:{canary.port}/", max_bytes=1000, method="POST", body=b"x"):
            pass
    assert canary.connections == 0


# -- SHOUTcast v1 (gateway/sources/shoutcast.py) -----------------------------


def _shoutcast_v1(first: bytes, rest: bytes) -> Handler:
    """A SHOUTcast v1 answer: ``first`` and ``rest`` written apart (a status line split across reads)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(first)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(rest)
        await writer.drain()

    return handler


@pytest.mark.parametrize("first", [b"ICY 200 OK\r\n", b"IC", b"I"])
async def test_a_shoutcast_v1_answer_is_read_as_http_1_0(make_fetcher: FetcherFactory, first: bytes) -> None:
    answer = b"ICY 200 OK\r\nicy-name:Old FM\r\nicy-br:128\r\ncontent-type:audio/mpeg\r\n\r\n" + b"\xff\xfb" * 500
    raw = await start_raw(_shoutcast_v1(first, answer[len(first):]))
    try:
        fetcher = make_fetcher(allow_hosts=[f"127.0.0.1:{raw.port}"])
        async with fetcher.stream(f"http://127.0.0.1:{raw.port}/;", max_bytes=10_000) as response:
            assert response.headers["icy-name"] == "Old FM"
            body = b"".join([piece async for piece in response.aiter_bytes()])
        assert body == b"\xff\xfb" * 500
    finally:
        await raw.close()


async def test_only_a_status_line_is_rewritten(make_fetcher: FetcherFactory) -> None:
    # An HTTP answer whose body begins "ICY " passes as it came; so does a status line that is
    # neither HTTP nor ICY (refused, as before).
    body = b"ICY 200 OK\r\n"
    raw = await start_raw(_shoutcast_v1(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", body))
    bad = await start_raw(_shoutcast_v1(b"ICE 200 OK\r\n\r\n", b""))
    try:
        fetcher = make_fetcher(allow_hosts=[f"127.0.0.1:{raw.port}", f"127.0.0.1:{bad.port}"])
        _, got = await fetcher.get_bytes(f"http://127.0.0.1:{raw.port}/", max_bytes=100)
        assert got == body
        with pytest.raises(UpstreamError):
            await fetcher.get_bytes(f"http://127.0.0.1:{bad.port}/", max_bytes=100)
    finally:
        await raw.close()
        await bad.close()


def test_the_plain_http_pool_is_the_icy_reading_one() -> None:
    # shoutcast.http_transport replaces httpx's private pool: if httpx renames it, this fails.
    import httpcore

    from gateway.sources.shoutcast import IcyStatusBackend, http_transport

    transport = http_transport(ssl.create_default_context())
    assert isinstance(transport._pool, httpcore.AsyncConnectionPool)
    assert isinstance(transport._pool._network_backend, IcyStatusBackend)
