"""The project's exception tree, mapped once to the public error contract.

Every failure that can reach a client is one of these. Foreign exceptions
(httpx, ffmpeg, diskcache) are translated at their own boundary, so the HTTP
layer only ever turns a ``ZtreamError`` into ``{"error", "detail"}``, in one
place (``gateway.http.responses.render_error``)::

    ZtreamError (500 internal)
    ├── BadRequest (400 bad_request, bad_url, ...)
    ├── Unauthorized (401 unauthorized)
    ├── Forbidden (403 upstream_forbidden, forbidden)
    ├── NotFound (404 not_found, track_not_found, chunk_not_found)
    ├── TooLarge (413 upstream_too_large)
    ├── NotAudio (415 upstream_not_audio)
    ├── RangeNotSatisfiable (416 range_not_satisfiable)
    ├── UnsupportedMediaType (415 json_required)
    ├── Unsupported (501 not_implemented)
    ├── TooManyRequests (429 rate_limited, too_many_connections, too_many_sockets, too_many_registrations, registration_quota, too_many_transcodes; Retry-After)
    ├── Overloaded (503 overloaded, with Retry-After)
    ├── StorageError (503 storage_unavailable)
    │   └── StorageFull (507 storage_full)
    └── UpstreamError (502 upstream_failed)
        └── UpstreamTimeout (504 upstream_timeout)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "SETTINGS",
    "without_addresses",
    "ZtreamError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Gone",
    "TooLarge",
    "NotAudio",
    "Unsupported",
    "Overloaded",
    "TooManyRequests",
    "UnsupportedMediaType",
    "RangeNotSatisfiable",
    "StorageError",
    "StorageFull",
    "UpstreamError",
    "UpstreamTimeout",
]


# Codes a configuration key would fix, and that key: the answer names it in
# ``setting`` (docs/http.md), and its detail mentions it, so that every page
# showing the detail (landing, /player/, /embed) names the fix too.
SETTINGS = {
    "host_not_allowed": "sources.url.allow_hosts",
    "soundcloud_disabled": "sources.soundcloud.client_id",
    "path_forbidden": "sources.local.dirs",
    "origin_forbidden": "server.embed_origins",
    "upstream_too_slow": "sources.url.min_bytes_per_second",
    "transcode_timeout": "transcode.timeout_seconds",
    "chunk_timeout": "server.chunk_wait_seconds",
    "transcode_too_slow": "transcode.min_speed",
    "too_many_transcodes": "transcode.max_per_client",
    "upstream_host_busy": "transcode.max_per_host",
    "too_many_registrations": "server.registrations_per_minute",
    "registration_quota": "server.registrations_per_hour",
    "catalog_full": "cache.max_tracks",
}


class ZtreamError(Exception):
    """A failure a client is told about: ``status``, ``code`` and ``detail``.

    ``retry_after`` (whole seconds, ``Retry-After``) says when to come back,
    None when the error does not know; a subclass may set it for all its
    errors or compute it when read. ``headers`` are extra response headers
    the answer must carry (a 416's ``Content-Range``).
    """

    status: int = 500
    code: str = "internal"
    retry_after: int | None = None

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        setting: str | None = None,
        retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        # The configuration key that would fix this, if one would (see SETTINGS).
        self.setting = setting if setting is not None else SETTINGS.get(self.code)
        if self.setting and self.setting not in detail:
            detail = f"{detail} (setting: {self.setting})"
        super().__init__(detail)
        self.detail = detail
        if retry_after is not None:
            self.retry_after = retry_after
        self.headers: dict[str, str] = dict(headers) if headers is not None else {}

    def to_json(self) -> dict[str, str]:
        body = {"error": self.code, "detail": without_addresses(self.detail)}
        if self.setting:
            body["setting"] = self.setting
        return body


class BadRequest(ZtreamError):
    status = 400
    code = "bad_request"


class Unauthorized(ZtreamError):
    status = 401
    code = "unauthorized"
    # Sent as WWW-Authenticate, which a 401 must carry (RFC 9110 11.6.1); the
    # admin token is the only credential the gateway asks for.
    challenge = 'Bearer realm="ztream-admin"'


class Forbidden(ZtreamError):
    status = 403
    code = "upstream_forbidden"


class NotFound(ZtreamError):
    status = 404
    code = "not_found"


class Gone(ZtreamError):
    """410: a live chunk or init segment that has left the window; it will never be served again."""

    status = 410
    code = "gone"


class TooLarge(ZtreamError):
    status = 413
    code = "upstream_too_large"


class NotAudio(ZtreamError):
    status = 415
    code = "upstream_not_audio"


class UnsupportedMediaType(ZtreamError):
    """A state-changing request whose body is not declared ``application/json``
    (a cross-origin form or ``text/plain`` post cannot set that type without a preflight)."""

    status = 415
    code = "json_required"


class Unsupported(ZtreamError):
    """A well-formed request for something the gateway does not do (an oEmbed format)."""

    status = 501
    code = "not_implemented"


class RangeNotSatisfiable(ZtreamError):
    """416: no byte of the asked ``Range`` exists; ``headers`` carry ``Content-Range: bytes */total``."""

    status = 416
    code = "range_not_satisfiable"

    def __init__(self, detail: str, *, content_range: str) -> None:
        super().__init__(detail, headers={"Content-Range": content_range})


class Overloaded(ZtreamError):
    """503 with ``Retry-After`` (5 s unless told otherwise)."""

    status = 503
    code = "overloaded"
    retry_after = 5


class TooManyRequests(ZtreamError):
    """One client asks for more than its share (RFC 6585 4): 429 with ``Retry-After`` (5 s unless told otherwise)."""

    status = 429
    code = "rate_limited"
    retry_after = 5


class StorageError(ZtreamError):
    """The chunk store's disk failed (an I/O error): what is stored may still be served."""

    status = 503
    code = "storage_unavailable"
    retry_after = 30


class StorageFull(StorageError):
    """The chunk store's disk is full (RFC 4918 11.5: 507 Insufficient Storage)."""

    status = 507
    code = "storage_full"


class UpstreamError(ZtreamError):
    status = 502
    code = "upstream_failed"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


# ffmpeg names its contexts "[mov,mp4,m4a @ 0x562d1c0a2b40]"; Python reprs say
# "at 0x7f3a...". A memory address tells a client nothing and an attacker
# something about the process's layout (ASLR): it never leaves in an answer.
_ADDRESS = re.compile(r"(?: @| at)? 0x[0-9a-fA-F]{8,16}\b")


def without_addresses(text: str) -> str:
    """``text`` without the memory addresses ffmpeg and Python reprs put in messages."""
    return _ADDRESS.sub("", text)
