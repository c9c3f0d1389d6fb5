"""SSRF-safe HTTP(S) fetching of upstream audio with httpx.

Theory of operation
-------------------
For every hop (the first URL and each redirect target) the fetcher:

1. parses the URL with :func:`netpolicy.parse_url` (http/https only, no
   userinfo, canonical host);
2. refuses an unlisted host before any lookup if an allow-list is set;
3. resolves the host exactly once (an IP literal is not resolved) and lets
   :class:`netpolicy.HostPolicy` check *every* address;
4. sends the request to the checked address itself: the URL's host becomes
   the IP, the ``Host`` header carries the original name, and for https the
   ``sni_hostname`` request extension makes httpcore use the name for SNI and
   certificate verification. httpx never sees a host name, so it never does
   a second lookup that DNS rebinding could answer differently.

Redirects are followed here, not by httpx (``follow_redirects=False``), so
each Location goes through the same four steps. ``trust_env=False`` keeps
``HTTP_PROXY`` and friends, ``.netrc`` and ``SSL_CERT_FILE`` out of it: a
proxy would make the connection somewhere other than the checked address.

Every httpx exception is translated here, at this boundary, into the
project's tree (``gateway/errors.py``)::

    parse/scheme/userinfo problems         -> BadRequest   (bad_url)
    allow-list / non-public address        -> Forbidden    (host_not_allowed / upstream_forbidden)
    HTTP 404, 410                          -> NotFound     (upstream_not_found)
    other HTTP >= 400                      -> UpstreamError (upstream_status)
    more than max_redirects redirects      -> UpstreamError (too_many_redirects)
    Content-Length or body over max_bytes  -> TooLarge
    connect/read/DNS timeouts              -> UpstreamTimeout
    a body slower than min_bytes_per_second -> UpstreamTimeout (upstream_too_slow)
    a Content-Encoding other than identity -> UpstreamError (upstream_encoding)
    connection, TLS and protocol errors    -> UpstreamError

Bodies are never decoded. The fetcher asks for ``Accept-Encoding:
identity``; an upstream that answers with ``gzip``, ``br``, ``deflate`` or
anything else anyway is refused before a byte of the body is read, since a
decoder turns 1 MB of gzip into 1 GB and audio gains nothing from it. So what
one fetch holds at once is one read of the raw body (at most 64 KiB, httpcore's
read size) plus the connection's buffers, whatever the upstream sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import logging
import socket
import ssl
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import httpx

from gateway.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    TooLarge,
    UpstreamError,
    UpstreamTimeout,
    ZtreamError,
)
from gateway.netpolicy import HostPolicy, ParsedURL, ip_literal, parse_url

from .shoutcast import http_transport

__all__ = ["Resolver", "SafeFetcher", "UpstreamResponse", "system_resolver"]

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]

# The body rate is judged over windows of this much time spent waiting on the
# upstream (time the consumer, ffmpeg's pipe, holds us up does not count):
# each window must bring min_bytes_per_second x RATE_WINDOW bytes, or the
# fetch ends. ``read_timeout`` bounds one read; this bounds the whole body, so
# an upstream that trickles one byte a second loses its transcode slot within
# RATE_WINDOW seconds instead of holding it for transcode.timeout_seconds.
RATE_WINDOW = 5.0

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_NOT_FOUND_STATUSES = frozenset({404, 410})
# Credentials a caller may add for one origin must not follow a redirect to
# another one (same rule as browsers and httpx's own redirect handling).
_ORIGIN_BOUND_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the event loop's ``getaddrinfo``.

    Returns the distinct IPv4/IPv6 addresses in resolver order (RFC 6724
    preference). Raises ``OSError`` (``socket.gaierror``) if it cannot.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if family in (socket.AF_INET, socket.AF_INET6) and address not in addresses:
            addresses.append(address)
    return addresses


class _NoCookies(http.cookiejar.CookiePolicy):
    """Refuse to store or send any cookie.

    The client is shared by all tracks and its requests target IP addresses,
    so a cookie jar would hand one upstream's cookies to another host on the
    same IP. Upstream audio needs no cookies.
    """

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: urllib.request.Request) -> bool:
        return False

    def path_return_ok(self, path: str, request: urllib.request.Request) -> bool:
        return False


class _TransportOwningStream(httpx.AsyncByteStream):
    """A response body that closes its one-off transport when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, transport: httpx.AsyncBaseTransport) -> None:
        self._stream = stream
        self._transport = transport

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            await self._transport.aclose()


class _PinnedTransport(httpx.AsyncBaseTransport):
    """Send requests whose URL host is an already checked IP address.

    Plain http shares one connection pool: httpcore keys it by (scheme, IP,
    port) and the ``Host`` header is per request, so two names on one IP may
    share a connection safely. https does not: httpcore's pool ignores the
    ``sni_hostname`` extension when it picks a connection, so a connection
    verified for ``a.example`` could be reused for ``b.example`` on the same
    IP without ``b``'s certificate ever being checked. Each https request
    therefore gets a fresh connection, closed with the response. Audio
    fetches are few, long streams, so the extra handshake costs little.
    """

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._ssl_context = ssl_context
        # Plain http reads SHOUTcast v1's "ICY 200 OK" too (shoutcast.py); https is never SHOUTcast v1.
        self._http = http_transport(ssl_context)

    def _one_off(self) -> httpx.AsyncHTTPTransport:
        return httpx.AsyncHTTPTransport(verify=self._ssl_context, trust_env=False, retries=0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # Last line of defence: a host name here would be resolved again by
        # the socket layer, which is exactly what the fetcher must never do.
        if ip_literal(request.url.host) is None:
            raise Forbidden("refusing to connect to an unchecked host name")
        if request.url.scheme != "https":
            return await self._http.handle_async_request(request)
        transport = self._one_off()
        try:
            response = await transport.handle_async_request(request)
        except BaseException:
            await transport.aclose()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _TransportOwningStream(response.stream, transport)
        return response

    async def aclose(self) -> None:
        await self._http.aclose()


def _content_length(headers: httpx.Headers) -> int | None:
    """The Content-Length as an int, or None if absent or unusable."""
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        length = int(value.strip())
    except ValueError:
        return None
    return length if length >= 0 else None


def _refuse_encoding(headers: httpx.Headers, host: str) -> None:
    """Raise unless the body is sent as it is (no Content-Encoding, or identity)."""
    encodings = [e.strip().lower() for e in ",".join(headers.get_list("content-encoding")).split(",")]
    if any(e not in ("", "identity") for e in encodings):
        shown = ", ".join(e for e in encodings if e)[:60]
        raise UpstreamError(
            f"upstream host {host!r} sent a compressed body (Content-Encoding: {shown}); "
            "only identity is accepted",
            code="upstream_encoding",
        )


def _map_httpx_error(exc: Exception, host: str) -> ZtreamError:
    """Translate an httpx exception raised while talking to ``host``."""
    log.debug("upstream %s failed: %r", host, exc)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"upstream host {host!r} timed out")
    if isinstance(exc, httpx.InvalidURL):
        return BadRequest(f"invalid upstream URL for host {host!r}", code="bad_url")
    # The class name says enough (ConnectError, RemoteProtocolError...);
    # the message may carry addresses that the client should not learn.
    return UpstreamError(f"upstream host {host!r} failed: {type(exc).__name__}")


class UpstreamResponse:
    """The final response of a fetch, after redirects, with the body unread.

    Attributes:
        url: the final URL, with its original host name (not the IP).
        status: the HTTP status (below 400, and not a followed redirect).
        headers: case-insensitive response headers (``httpx.Headers``).
        content_length: the Content-Length, or None if absent/unusable.
        bytes_read: body bytes read so far through :meth:`aiter_bytes`.
    """

    url: str
    status: int
    headers: httpx.Headers
    content_length: int | None
    bytes_read: int

    def __init__(self, response: httpx.Response, parsed: ParsedURL, max_bytes: int, min_rate: int = 0,
                 rate_window: float = RATE_WINDOW) -> None:
        self._response = response
        self._host = parsed.host
        self._max_bytes = max_bytes
        self._min_rate = min_rate
        self._rate_window = rate_window
        self.url = parsed.url
        self.status = response.status_code
        self.headers = response.headers
        self.content_length = _content_length(response.headers)
        self.bytes_read = 0

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives (never decoded: see ``upstream_encoding``).

        Raises:
            TooLarge: as soon as the running total exceeds ``max_bytes``; the
                chunk that crossed the limit is not yielded.
            UpstreamTimeout: a read timed out, or (``upstream_too_slow``) a
                window of ``rate_window`` seconds spent waiting brought less
                than the minimum rate.
            UpstreamError: the connection failed or broke the protocol,
                e.g. it closed before Content-Length bytes arrived;
                ``upstream_encoding`` for a body sent with a Content-Encoding
                other than identity (refused before reading it).
        """
        # Before any read: httpx would decode a compressed body whole, chunk by chunk, unbounded.
        _refuse_encoding(self.headers, self._host)
        chunks = self._response.aiter_bytes()
        loop = asyncio.get_running_loop()
        window = self._rate_window
        wanted = self._min_rate * window
        waited = 0.0  # seconds spent waiting on the upstream in this window
        got = 0  # bytes it brought in this window
        try:
            while True:
                started = loop.time()
                try:
                    if wanted:
                        async with asyncio.timeout(window - waited):
                            chunk = await anext(chunks)
                    else:
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise UpstreamTimeout(
                        f"upstream host {self._host!r} sent {got} bytes in {window:.0f} s, "
                        f"under the minimum of {self._min_rate} bytes per second",
                        code="upstream_too_slow",
                    ) from None
                waited += loop.time() - started
                got += len(chunk)
                if got >= wanted:  # this window is met: the next one starts now
                    waited, got = 0.0, 0
                self.bytes_read += len(chunk)
                if self.bytes_read > self._max_bytes:
                    raise TooLarge(f"upstream body from {self._host!r} exceeds {self._max_bytes} bytes",
                                   setting="sources.url.max_bytes")
                yield chunk
        except httpx.HTTPError as exc:
            raise _map_httpx_error(exc, self._host) from None
        finally:
            aclose = getattr(chunks, "aclose", None)  # an async generator: end it here, not at GC
            if aclose is not None:
                await aclose()

    def __repr__(self) -> str:
        return f"<UpstreamResponse {self.status} {self.url}>"


class SafeFetcher:
    """Fetch upstream URLs without letting them reach internal addresses.

    One instance holds one ``httpx.AsyncClient``; share it, and call
    :meth:`aclose` at shutdown. Safe for concurrent use from many tasks.
    """

    def __init__(
        self,
        *,
        allow_hosts: Sequence[str] = (),
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        min_bytes_per_second: int = 0,
        max_redirects: int = 5,
        resolver: Resolver | None = None,
        user_agent: str = "ztream/0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Build the fetcher.

        Takes the allow-list (see :class:`netpolicy.HostPolicy`), timeouts in
        seconds (``connect_timeout`` also bounds the DNS lookup and waiting
        for a pooled connection; ``read_timeout`` bounds each read and
        write; ``min_bytes_per_second`` bounds a whole body, judged over
        ``RATE_WINDOW``, 0 for none), the redirect limit, an optional resolver (tests inject one;
        the default is :func:`system_resolver`), the User-Agent, and an
        optional SSL context (default: certifi's CAs; give one for a private
        CA or for tests).

        Raises:
            ValueError: a malformed allow-list entry or a negative limit.
            TypeError: ``allow_hosts`` given as one string, not a sequence.
        """
        if max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
        if min_bytes_per_second < 0:
            raise ValueError("min_bytes_per_second must be >= 0")
        self._min_rate = min_bytes_per_second
        self._policy = HostPolicy(allow_hosts)
        self._connect_timeout = connect_timeout
        self._max_redirects = max_redirects
        self._resolver: Resolver = resolver if resolver is not None else system_resolver
        if ssl_context is None:
            ssl_context = httpx.create_ssl_context(trust_env=False)
        self._client = httpx.AsyncClient(
            transport=_PinnedTransport(ssl_context),
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(
                connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
            ),
            # identity: audio is already compressed, and it keeps
            # Content-Length meaningful for the max_bytes pre-check.
            headers={"User-Agent": user_agent, "Accept-Encoding": "identity"},
            cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
        )

    # -- public API ---------------------------------------------------------

    async def check_url(self, url: str) -> str:
        """Check ``url`` without fetching it (used when a track is registered).

        Returns the normalized URL (no fragment). Redirects are not followed
        here; :meth:`stream` re-checks every hop anyway.

        Raises:
            BadRequest(code="bad_url"), Forbidden, UpstreamTimeout (DNS),
            UpstreamError (the host does not resolve).
        """
        parsed = parse_url(url)
        await self._resolve_and_check(parsed)
        return parsed.url

    @contextlib.asynccontextmanager
    async def stream(
        self, url: str, *, max_bytes: int, headers: Mapping[str, str] | None = None,
        rate_window: float = RATE_WINDOW,
    ) -> AsyncIterator[UpstreamResponse]:
        """Open ``url`` (following redirects) and yield the final response.

        Use as ``async with fetcher.stream(url, max_bytes=...) as response``
        and read with ``response.aiter_bytes()``; the connection is closed
        when the block ends. ``headers`` are sent on every hop, except that
        Authorization/Cookie are dropped from the first cross-origin hop on;
        ``Host`` is always set by the fetcher.

        Raises (before yielding): BadRequest, Forbidden, NotFound,
        UpstreamError, UpstreamTimeout, and TooLarge when Content-Length
        exceeds ``max_bytes``. While reading, see
        :meth:`UpstreamResponse.aiter_bytes`; ``rate_window`` is how long the
        minimum rate is judged over (a live upstream may pause a few seconds).
        """
        response, parsed = await self._open(url, headers)
        try:
            self._accept(response, parsed, max_bytes)
            yield UpstreamResponse(response, parsed, max_bytes, self._min_rate, rate_window)
        finally:
            await self._close(response, parsed)

    @contextlib.asynccontextmanager
    async def open(
        self,
        url: str,
        *,
        max_bytes: int,
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
        body: bytes | None = None,
        follow_redirects: bool = True,
    ) -> AsyncIterator[UpstreamResponse]:
        """Like :meth:`stream`, for callers that read statuses themselves.

        Every HTTP status is handed back in ``response.status`` (nothing is
        raised for it, and Content-Length is not checked up front). A request
        other than a bodiless GET, or ``follow_redirects=False``, is sent as
        a single hop: a redirect answer is returned, not followed. Every hop
        is checked exactly as :meth:`stream` checks it.

        Raises (before yielding): BadRequest, Forbidden, UpstreamError,
        UpstreamTimeout.
        """
        follow = follow_redirects and method == "GET" and body is None
        response, parsed = await self._open(url, headers, method=method, body=body, follow=follow)
        try:
            yield UpstreamResponse(response, parsed, max_bytes, self._min_rate)
        finally:
            await self._close(response, parsed)

    async def get_bytes(
        self, url: str, *, max_bytes: int, headers: Mapping[str, str] | None = None
    ) -> tuple[UpstreamResponse, bytes]:
        """Fetch a small document (JSON, playlist) whole.

        Returns the response (closed) and its body. Raises as :meth:`stream`.
        """
        async with self.stream(url, max_bytes=max_bytes, headers=headers) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
        return response, bytes(body)

    async def aclose(self) -> None:
        """Close pooled connections. Responses still open stay usable until closed."""
        await self._client.aclose()

    # -- internals ----------------------------------------------------------

    async def _resolve_and_check(self, parsed: ParsedURL) -> str:
        """Resolve ``parsed.host`` once and return the checked address to use."""
        # An unlisted host is refused before it costs (or leaks) a DNS query.
        self._policy.check_host(parsed.host, parsed.port)
        if ip_literal(parsed.host) is not None:
            addresses = [parsed.host]
        else:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    addresses = list(await self._resolver(parsed.host, parsed.port))
            except TimeoutError:
                raise UpstreamTimeout(f"resolving upstream host {parsed.host!r} timed out") from None
            except (OSError, UnicodeError) as exc:
                log.debug("resolving %s failed: %r", parsed.host, exc)
                raise UpstreamError(f"cannot resolve upstream host {parsed.host!r}") from None
        return self._policy.check(parsed.host, parsed.port, addresses)

    def _build_request(
        self, parsed: ParsedURL, address: str, headers: Mapping[str, str], method: str = "GET",
        body: bytes | None = None,
    ) -> httpx.Request:
        """A request for ``parsed`` aimed at ``address``, keeping the name for Host and SNI."""
        target = httpx.URL(parsed.url).copy_with(host=address)
        request_headers = {k: v for k, v in headers.items() if k.lower() != "host"}
        request_headers["Host"] = parsed.netloc
        extensions: dict[str, object] = {}
        if parsed.scheme == "https":
            extensions["sni_hostname"] = parsed.host
        return self._client.build_request(
            method, target, headers=request_headers, content=body, extensions=extensions
        )

    async def _send(self, request: httpx.Request, parsed: ParsedURL) -> httpx.Response:
        try:
            return await self._client.send(request, stream=True)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise _map_httpx_error(exc, parsed.host) from None

    async def _close(self, response: httpx.Response, parsed: ParsedURL) -> None:
        try:
            await response.aclose()
        except httpx.HTTPError as exc:  # nothing left to report to the caller
            log.debug("closing response from %s failed: %r", parsed.host, exc)

    def _redirect_target(self, current: ParsedURL, location: str) -> ParsedURL:
        """Resolve ``location`` against the current URL and parse it afresh."""
        try:
            joined = str(httpx.URL(current.url).join(location))
        except (httpx.InvalidURL, ValueError, TypeError, UnicodeError):
            raise BadRequest(f"upstream host {current.host!r} redirected to an invalid URL", code="bad_url") from None
        try:
            return parse_url(joined)
        except BadRequest as exc:
            raise BadRequest(f"upstream host {current.host!r} redirected to a refused URL: {exc.detail}", code="bad_url") from None

    async def _open(
        self, url: str, headers: Mapping[str, str] | None, *, method: str = "GET", body: bytes | None = None,
        follow: bool = True,
    ) -> tuple[httpx.Response, ParsedURL]:
        """Follow redirects by hand (unless ``follow`` is off), checking every hop."""
        parsed = parse_url(url)
        hop_headers = dict(headers or {})
        redirects = 0
        while True:
            address = await self._resolve_and_check(parsed)
            request = self._build_request(parsed, address, hop_headers, method, body)
            response = await self._send(request, parsed)
            if not follow or response.status_code not in _REDIRECT_STATUSES:
                return response, parsed
            location = response.headers.get("location")
            await self._close(response, parsed)
            if redirects >= self._max_redirects:
                raise UpstreamError(
                    f"upstream host {parsed.host!r} redirected more than {self._max_redirects} times",
                    code="too_many_redirects",
                )
            if not location:
                raise UpstreamError(f"upstream host {parsed.host!r} sent a redirect without Location")
            redirects += 1
            target = self._redirect_target(parsed, location)
            if target.origin != parsed.origin:
                hop_headers = {k: v for k, v in hop_headers.items() if k.lower() not in _ORIGIN_BOUND_HEADERS}
            parsed = target

    @staticmethod
    def _accept(response: httpx.Response, parsed: ParsedURL, max_bytes: int) -> None:
        """Refuse an error status or a declared body over ``max_bytes``, unread."""
        status = response.status_code
        if status in _NOT_FOUND_STATUSES:
            raise NotFound(f"upstream host {parsed.host!r} answered HTTP {status}", code="upstream_not_found")
        if status >= 400:
            raise UpstreamError(f"upstream host {parsed.host!r} answered HTTP {status}", code="upstream_status")
        _refuse_encoding(response.headers, parsed.host)
        length = _content_length(response.headers)
        if length is not None and length > max_bytes:
            raise TooLarge(f"upstream body from {parsed.host!r} is {length} bytes, over {max_bytes}",
                           setting="sources.url.max_bytes")
