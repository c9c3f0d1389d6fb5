"""SHOUTcast v1's status line: ``ICY 200 OK`` read as ``HTTP/1.0 200 OK``.

A SHOUTcast v1 server (and SHOUTcast 2 in its legacy mode, and many radio
appliances) answers a stream request with ``ICY 200 OK`` instead of an HTTP
status line; the headers and the endless body that follow are HTTP/1.0's
(``icy-*`` headers, no length, closed by the server). h11, under httpx,
refuses the line (``RemoteProtocolError``), so such a station would not
play at all. ``IcyStatusBackend`` wraps httpcore's network backend: each
plain TCP connection's first bytes, when they are ``ICY ``, become
``HTTP/1.0 `` before h11 reads them; nothing else is touched (TLS streams
are never SHOUTcast v1, and an HTTP answer passes through as it came).
"""

from __future__ import annotations

import ssl
import typing

import httpcore
import httpx

__all__ = ["IcyStatusBackend", "http_transport"]

_ICY = b"ICY "
_HTTP10 = b"HTTP/1.0 "


class _IcyStatusStream(httpcore.AsyncNetworkStream):
    """One connection whose answer may begin ``ICY ``: rewritten once, at its start."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._at_start = True

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = await self._stream.read(max_bytes, timeout)
        if not self._at_start:
            return data
        # Enough to tell: a first read of "IC" is rare but legal TCP.
        while data and len(data) < len(_ICY) and _ICY.startswith(data):
            more = await self._stream.read(max_bytes, timeout)
            if not more:
                break
            data += more
        self._at_start = False
        return _HTTP10 + data[len(_ICY):] if data.startswith(_ICY) else data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        return await self._stream.start_tls(ssl_context, server_hostname, timeout)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class IcyStatusBackend(httpcore.AsyncNetworkBackend):
    """httpcore's AnyIO backend, its TCP connections wrapped in ``_IcyStatusStream``."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._backend = backend or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _IcyStatusStream(stream)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[typing.Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        return await self._backend.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def http_transport(ssl_context: ssl.SSLContext) -> httpx.AsyncHTTPTransport:
    """httpx's transport (no proxy, no retries) over a pool that reads SHOUTcast v1 answers.

    httpx takes no network backend, so its pool is replaced by one built like its own
    (httpx's default limits) with ``IcyStatusBackend``; ``_pool`` is httpx's name for it
    in the pinned range (pyproject.toml), and tests/unit/gateway/sources/test_fetch.py
    (``test_the_plain_http_pool_is_the_icy_reading_one``) fails if that ever changes.
    """
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, trust_env=False, retries=0)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        retries=0, network_backend=IcyStatusBackend(),
    )
    return transport
