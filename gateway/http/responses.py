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

from ..errors import BadRequest, Unauthorized, UnsupportedMediaType, ZtreamError
from ..internals.aiohttp import runner_answering_protocol_errors, sent_bytes
from . import ORIGINS
from .conditional import JsonTooDeep, loads_limited

__all__ = ["render_error", "endpoint", "read_json", "Handler"]

log = logging.getLogger("ztream.http")

# No request body of this API nests deeper than a few levels.
MAX_JSON_DEPTH = 32

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def render_error(request: web.Request, exc: ZtreamError) -> web.Response:
    """The contract's JSON answer for ``exc``."""
    headers = request.app[ORIGINS].cors_headers(request)
    retry_after = exc.retry_after  # read once: a subclass may compute it
    if retry_after is not None and retry_after > 0:
        headers["Retry-After"] = str(retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = exc.challenge
    headers.update(exc.headers)  # e.g. a 416's Content-Range
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
    decode. Before reading, a body not declared ``application/json`` (or
    ``application/*+json``) is 415 ``json_required``: a page of another origin
    can post a form or ``text/plain`` without asking, but not JSON, so a
    state-changing request can never come from a hidden cross-origin form.
    """
    if request.content_length is not None and request.content_length > max_bytes:
        raise BadRequest("the body is too large", code="body_too_large")
    mime = request.content_type
    if mime != "application/json" and not (mime.startswith("application/") and mime.endswith("+json")):
        raise UnsupportedMediaType(f"the body must be JSON, sent as Content-Type: application/json (not {mime})")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise BadRequest("the body is too large", code="body_too_large")
    try:
        # Depth-limited before parsing: "[[[[..." 8,000 deep fits in 16 KiB
        # and would otherwise reach the decoder's recursion.
        return loads_limited(raw, max_depth=MAX_JSON_DEPTH)
    except JsonTooDeep:
        raise BadRequest(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels", code="bad_json") from None
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8 too; RecursionError cannot happen
        # under the depth limit, but is input, not a server fault, if it does.
        raise BadRequest("the body is not JSON", code="bad_json") from None


# -- errors aiohttp answers itself ---------------------------------------------
#
# A request line over 8 KiB, a bad header or a malformed Content-Length never
# reach the router, so neither ``endpoint`` nor a middleware sees them: the
# protocol layer answers them itself, in plain text. ``ZtreamRunner`` is an
# ``AppRunner`` whose connections answer them with ``answer_protocol_error``,
# in the contract's JSON; how it hooks into aiohttp (private names) is in
# gateway/internals/aiohttp.py.

_PROTOCOL_CODES = {400: "bad_request", 413: "body_too_large", 431: "bad_request"}


def answer_protocol_error(
    handler: web.RequestHandler,
    request: web.BaseRequest,
    status: int,
    exc: BaseException | None,
    message: str | None,
) -> web.StreamResponse:
    """The JSON answer to an error aiohttp's protocol layer found (``handler`` is the connection's)."""
    if status >= 500:
        handler.log_exception("error handling request from %s", request.remote, exc_info=exc)
    else:  # the client's mistake: one line, not a traceback
        log.debug("bad request from %s: %s %s", request.remote, status, message or exc)
    if sent_bytes(request) > 0:  # as aiohttp: too late for an answer
        raise ConnectionError("the answer is already partly sent")
    code = _PROTOCOL_CODES.get(status, "internal" if status >= 500 else "bad_request")
    detail = "internal server error" if status >= 500 else (message or "the request is malformed")
    body = json.dumps({"error": code, "detail": detail[:300]})
    response = web.Response(status=status, text=body, content_type="application/json")
    response.force_close()
    return response


# An ``AppRunner`` whose connections answer protocol errors in the JSON shape.
ZtreamRunner = runner_answering_protocol_errors(answer_protocol_error)
