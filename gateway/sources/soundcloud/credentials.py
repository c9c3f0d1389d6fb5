"""SoundCloud credentials: a configured or discovered client id, or a shared OAuth token.

* api-v2 sends ``client_id=<id>`` on every request. ``client_id = "auto"``
  finds a public one the way yt-dlp does: the site's page lists its script
  bundles, and one of them holds ``client_id:"<32 chars>"``. That is
  unofficial and may break whenever SoundCloud changes its site; the id is
  kept and discovered again when the API answers 401.
* The official API takes an OAuth 2.1 client credentials token from
  ``{auth_base}/oauth/token``, sent as ``Authorization: OAuth <token>``.
  SoundCloud caps the tokens an app may obtain, so one token is shared and
  kept until shortly before it expires, or until the API answers 401.

:meth:`Credentials.get` is the one way the resolver asks the API: it adds
the mode's credentials and renews them once when refused with 401.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping

from ...config import SoundCloudConfig
from ...errors import UpstreamError, ZtreamError
from .client import API_MAX_BYTES, ApiClient, Reply
from .parsing import find_client_id, find_script_urls, with_query

__all__ = ["Credentials"]

log = logging.getLogger("ztream.soundcloud")

PAGE_MAX_BYTES = 4_000_000  # the site's page, client-id discovery only
SCRIPT_MAX_BYTES = 10_000_000  # one script bundle
MAX_SCRIPTS = 8  # bundles tried per discovery, from the last


class Credentials:
    """The mode's credentials, obtained lazily, shared by every request, renewed on 401."""

    def __init__(self, client: ApiClient, config: SoundCloudConfig) -> None:
        """Takes the shared client and ``[sources.soundcloud]``.

        Raises:
            ValueError: no client_id, or "auto" together with a client_secret.
        """
        if not config.client_id:
            raise ValueError("sources.soundcloud.client_id is empty")
        self.official = bool(config.client_secret)
        self.auto = config.client_id == "auto"
        if self.auto and self.official:
            raise ValueError('sources.soundcloud.client_id = "auto" works with api-v2 only (no client_secret)')
        self._client = client
        self._config = config
        self.auth_base = config.auth_base.rstrip("/")
        self._client_id: str | None = None if self.auto else config.client_id
        self._discovery_lock = asyncio.Lock()
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

    async def get(self, url: str, purpose: str, params: Mapping[str, str] | None = None, *,
                  follow: bool = True) -> Reply:
        """GET an API URL with the mode's credentials, renewing them once on 401."""
        for attempt in (0, 1):
            if self.official:
                token = await self.oauth_token()
                reply = await self._client.get(with_query(url, params or {}), purpose, follow=follow,
                                               headers={"Authorization": f"OAuth {token}"})
                if reply.status == 401 and attempt == 0:
                    self._drop_token(token)
                    continue
            else:
                client_id = await self.client_id()
                reply = await self._client.get(with_query(url, {**(params or {}), "client_id": client_id}),
                                               purpose, follow=follow)
                if reply.status == 401 and self.auto and attempt == 0:
                    await self._rediscover(client_id)
                    continue
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the official API's token -------------------------------------------------

    async def oauth_token(self) -> str:
        """The shared OAuth token, obtained once and kept until shortly before expiry."""
        if self._token is not None and self._client.clock() < self._token_expires:
            return self._token
        async with self._token_lock:
            # Whoever waited on the lock finds the token the first one got.
            if self._token is not None and self._client.clock() < self._token_expires:
                return self._token
            self._client.check_backoff()
            secret = f"{self._config.client_id}:{self._config.client_secret}"
            basic = base64.b64encode(secret.encode()).decode()
            self._client.requests["token"] += 1
            reply = await self._client.http.request(
                f"{self.auth_base}/oauth/token",
                max_bytes=API_MAX_BYTES,
                method="POST",
                follow=False,
                body=b"grant_type=client_credentials",
                headers={
                    "Authorization": f"Basic {basic}",
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json; charset=utf-8",
                },
            )
            if reply.status == 429:
                raise self._client.rate_limited(reply.headers)
            if reply.status in (400, 401, 403):
                raise UpstreamError("SoundCloud refused the configured client credentials",
                                    code="soundcloud_unauthorized")
            if reply.status != 200:
                raise UpstreamError(f"SoundCloud's token endpoint answered HTTP {reply.status}", code="upstream_status")
            data = self._client.json(reply)
            token = data.get("access_token") if isinstance(data, dict) else None
            if not isinstance(token, str) or not token:
                raise UpstreamError("SoundCloud's token answer has no access_token", code="soundcloud_bad_answer")
            expires_in = data.get("expires_in")
            if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool) or expires_in <= 0:
                expires_in = 3600
            # Renew a little before SoundCloud would refuse it: a minute, or
            # a tenth of a short lifetime.
            self._token_expires = self._client.clock() + expires_in - min(60.0, expires_in / 10)
            self._token = token
            return token

    def _drop_token(self, token: str) -> None:
        # Only the token that was refused: another request may have renewed it already.
        if self._token == token:
            self._token = None

    # -- api-v2's client id ----------------------------------------------------------

    async def client_id(self) -> str:
        """The configured client id, or the discovered one (discovered on first use)."""
        if self._client_id is not None:
            return self._client_id
        async with self._discovery_lock:
            if self._client_id is None:
                self._client_id = await self._discover_client_id()
            return self._client_id

    async def _rediscover(self, stale: str) -> None:
        async with self._discovery_lock:
            if self._client_id == stale:
                log.info("SoundCloud refused the discovered client id; discovering again")
                self._client_id = await self._discover_client_id()

    async def _discover_client_id(self) -> str:
        """Find a public client id in the site's script bundles, as yt-dlp does (unofficial)."""
        client, http = self._client, self._client.http
        client.check_backoff()
        client.requests["discovery"] += 1
        site = client.site
        async with http.open(site.page, max_bytes=PAGE_MAX_BYTES) as opened:
            if opened.status != 200:
                raise UpstreamError(f"SoundCloud's site answered HTTP {opened.status}", code="soundcloud_client_id")
            page = (await http.read(opened)).decode("utf-8", "replace")
            page_url = opened.url
        scripts = find_script_urls(page, page_url, site.assets)
        # The client id sits in one of the last bundles: try those first.
        for script_url in reversed(scripts[-MAX_SCRIPTS:]):
            try:
                async with http.open(script_url, max_bytes=SCRIPT_MAX_BYTES) as opened:
                    if opened.status != 200:
                        continue
                    script = (await http.read(opened)).decode("utf-8", "replace")
            except ZtreamError as exc:
                log.debug("script bundle %s: %s", script_url, exc.detail)
                continue
            client_id = find_client_id(script)
            if client_id is not None:
                return client_id
        raise UpstreamError("could not discover a SoundCloud client id from the site's scripts",
                            code="soundcloud_client_id")
