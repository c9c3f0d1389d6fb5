"""The one error path of the HTTP surface: raise a ``ZtreamError``, and it is rendered here.

- ``render_error(request, exc)`` writes every JSON error answer,
  ``{"error": code, "detail": text}`` with the error's status (docs/http.md),
  the CORS headers the origin policy gives that request, ``Retry-After`` when
  the error knows when to come back (RFC 9110 10.2.3), and the challenge of
  a 401 (RFC 9110 11.6.1).
- ``endpoint(handler)`` wraps a handler so that what it raises reaches
  ``render_error``; anything unexpected is logged and answered as a 500
  ``internal``, never as a traceback or a dropped connection.
- ``read_json(request, max_bytes)`` is the one way to read a JSON body: bounded
  before it is read, and raising ``BadRequest`` for anything that is not JSON,
  including nesting deep enough to exhaust the decoder's stack.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..errors import BadRequest, Unauthorized, ZtreamError
from . import ORIGINS

__all__ = ["render_error", "endpoint", "read_json", "Handler"]

log = logging.getLogger("ztream.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def render_error(request: web.Request, exc: ZtreamError) -> web.Response:
    """The contract's JSON answer for ``exc``."""
    headers = request.app[ORIGINS].cors_headers(request)
    # Duck-typed: an error whose wait is computed when read (a property) and
    # one that is told it (an attribute) both just have ``retry_after``.
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int) and retry_after > 0:
        headers["Retry-After"] = str(retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = exc.challenge
    return web.json_response(exc.to_json(), status=exc.status, headers=headers)


def endpoint(handler: Handler) -> Handler:
    """Turn the project's errors, and any surprise, into the JSON contract."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ZtreamError as exc:
            return render_error(request, exc)
        except (ConnectionError, web.HTTPException):
            raise
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return render_error(request, ZtreamError("internal server error"))

    return wrapped


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """The request's JSON body (any JSON value: the caller checks its shape).

    Raises ``BadRequest`` ``body_too_large`` over ``max_bytes`` (decided from
    ``Content-Length`` before reading when there is one, and by reading at
    most one byte more otherwise) and ``bad_json`` for anything that does not
    decode.
    """
    if request.content_length is not None and request.content_length > max_bytes:
        raise BadRequest("the body is too large", code="body_too_large")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise BadRequest("the body is too large", code="body_too_large")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8 too; RecursionError is "[[[[..." nested
        # deeper than the decoder's stack, which is input, not a server fault.
        raise BadRequest("the body is not JSON", code="bad_json") from None
