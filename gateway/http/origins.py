"""The one origin policy: which web pages may read, frame and connect to the gateway.

``server.embed_origins`` names the sites that embed the player; ``["*"]``
means any. ``OriginPolicy`` turns that list into every origin decision the
gateway makes (docs/http.md, docs/websocket.md):

- **CORS** (``cors_headers``): an API answer (``/v1/...``, and the JSON 404 of
  an unknown path) may be read by the embedding origins, and says
  ``Vary: Origin`` since it depends on who asks. The client modules
  (``/client/*``) and oEmbed (``/oembed``) are for any page: third-party pages
  ``import`` the modules, and an oEmbed consumer is by definition elsewhere.
- **Framing** (``frame_ancestors``): the embed page may be framed by the
  embedding origins and the gateway itself, by anyone with ``*``.
- **The HTML pages' Content-Security-Policy** (``page_csp``): scripts,
  styles, media and connections from the gateway only (its public origin and
  its WebSocket), no inline script, and the framing rule above.
- **The control WebSocket** (``websocket_allowed``): a browser page may open
  ``/v1/ws`` if its origin is an embedding origin, the gateway's public
  origin, or the origin the request was addressed to (same-origin, whatever
  name the gateway was reached by). Clients without ``Origin`` (the headless
  peer, tools) are not browsers, so not this policy's business.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import web

__all__ = ["OriginPolicy", "ANY_ORIGIN", "normalize_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(origin: str) -> str:
    """An origin as one comparable string: ``https://Good.Example:443/`` -> ``https://good.example``.

    Browsers send ``Origin`` in this form already; an operator's config may
    not (capitals, a trailing slash, the default port). Both sides of every
    origin comparison go through it, CORS and the control socket alike.
    Anything that is not an ``http(s)`` origin is only trimmed and lowered
    (``null`` stays ``null``, and matches nothing configured).
    """
    origin = origin.strip().rstrip("/")
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return origin.lower()
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return origin.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"

# Readable by every page. A shared constant: copy before adding to it.
ANY_ORIGIN: dict[str, str] = {"Access-Control-Allow-Origin": "*"}
# What a cross-origin reader of an API answer may see besides the simple headers.
_EXPOSE = "ETag, Content-Length, Content-Range, Accept-Ranges, X-Ztream-Complete, Retry-After"


def _public_path(path: str) -> bool:
    return path.startswith("/client/") or path == "/oembed"


ADMIN_PREFIX = "/v1/admin/"


class OriginPolicy:
    __slots__ = ("embed_origins", "public_url", "any_origin", "_normalized", "_public_origin")

    def __init__(self, embed_origins: Iterable[str], public_url: str) -> None:
        self.embed_origins = tuple(embed_origins)
        self.public_url = public_url.rstrip("/")
        self.any_origin = "*" in self.embed_origins
        # Browsers send origins in lower case without a slash; the config may not.
        self._normalized = frozenset(normalize_origin(o) for o in self.embed_origins)
        public = urlsplit(self.public_url)
        self._public_origin = normalize_origin(f"{public.scheme}://{public.netloc}")

    # -- CORS ---------------------------------------------------------------

    def cors_headers(self, request: web.Request) -> dict[str, str]:
        """The CORS headers for any answer to ``request`` (a fresh dict: callers add to it)."""
        if _public_path(request.path):
            return dict(ANY_ORIGIN)
        origin = request.headers.get("Origin")
        # The admin API is for the gateway's own /admin page: no other origin
        # may read its answers, whatever embed_origins says.
        if origin is None or request.path.startswith(ADMIN_PREFIX):
            return {"Vary": "Origin"}
        if self.any_origin:
            allow = "*"
        elif normalize_origin(origin) in self._normalized:
            allow = origin  # as the browser sent it: it compares it with its own, exactly
        else:
            return {"Vary": "Origin"}
        return {"Vary": "Origin", "Access-Control-Allow-Origin": allow, "Access-Control-Expose-Headers": _EXPOSE}

    # -- framing ------------------------------------------------------------

    def frame_ancestors(self) -> str | None:
        """The embed page's CSP ``frame-ancestors`` directive; ``None``: anyone may frame it."""
        if self.any_origin:
            return None
        return "frame-ancestors " + " ".join(["'self'", *(normalize_origin(o) for o in self.embed_origins)])

    def page_csp(self, *, https_images: bool, frames: bool) -> str:
        """The ``Content-Security-Policy`` of the gateway's HTML pages (landing, embed, ``/player/``).

        Everything comes from the gateway itself (``'self'`` and its public
        origin, which differ behind a proxy); ``https_images`` also allows
        images from any HTTPS host (SoundCloud's artwork CDN), ``frames``
        allows the gateway's own pages in an ``<iframe>``. Ends with
        ``frame_ancestors()`` when framing is restricted.
        """
        public = urlsplit(self.public_url)
        ws = f"{'wss' if public.scheme == 'https' else 'ws'}://{public.netloc}"
        sources = f"'self' {public.scheme}://{public.netloc}"
        csp = [
            "default-src 'none'",
            f"script-src {sources}",
            f"style-src {sources} 'unsafe-inline'",
            f"img-src {sources} data:" + (" https:" if https_images else ""),
            f"media-src {sources} blob:",
            f"connect-src {sources} {ws}",
        ]
        if frames:
            csp.append(f"frame-src {sources}")
        csp += ["base-uri 'none'", "form-action 'none'"]
        ancestors = self.frame_ancestors()
        if ancestors is not None:
            csp.append(ancestors)
        return "; ".join(csp)

    def embedders(self) -> list[str]:
        """The origins the embed page talks to with ``postMessage`` (``["*"]``: any)."""
        return ["*"] if self.any_origin else [normalize_origin(o) for o in self.embed_origins]

    # -- the control WebSocket ------------------------------------------------

    def websocket_allowed(self, origin: str, host: str | None) -> bool:
        """Whether a browser page at ``origin`` may open the control socket of a
        gateway reached as ``host`` (the request's ``Host``)."""
        if self.any_origin:
            return True
        origin = normalize_origin(origin)
        if origin in self._normalized or origin == self._public_origin:
            return True
        if host:
            parts = urlsplit(origin)
            return parts.scheme in ("http", "https") and origin == normalize_origin(f"{parts.scheme}://{host}")
        return False
