"""SoundCloud tracks, resolved through SoundCloud's APIs, never its web pages.

Theory of operation
-------------------
A track is known by its numeric id: every URL form (``soundcloud.com``,
``m.``/``www.``, ``on.soundcloud.com`` short links, ``soundcloud:tracks:<id>``)
is resolved to the same id, and the track id is
``track_id_for("soundcloud", "tracks:<id>")``, so they all share one track.

Two modes, chosen by ``[sources.soundcloud]``: **api-v2** (``client_id``
alone, the web player's API; ``"auto"`` discovers a public client id) and
**official** (``client_id`` + ``client_secret``: an OAuth client credentials
token). One stream is picked per track: progressive MP3, else HLS MP3, else
HLS AAC, else HLS Opus; ``snipped`` 30-second previews only when nothing
else exists, and then the track says ``preview``.

The package is split at its seams, each module usable and testable alone:

* :mod:`.parsing`: pure; URLs, API JSON and the site's page to typed records;
* :mod:`.errors`: :class:`Unavailable` (451) and :class:`RateLimited` (503);
* :mod:`.client`: HTTP on SafeFetcher's per-hop checks, the 429 back-off;
* :mod:`.credentials`: the client id (configured or discovered) and the
  OAuth token, shared and renewed on 401;
* :mod:`.resolver`: URL to track JSON (cached), track to signed media URL;
* :mod:`.source`: the Source (``register``, ``open``), which plays the media
  URL with the generic :mod:`gateway.sources.hls_follow`: HLS is fetched
  here, never by ffmpeg, segment by segment through the SSRF-safe fetcher,
  and a segment refused with 401/403 (its signature expired midway) makes
  the follower resolve again and resume at that same segment.

Sets (``soundcloud.com/<user>/sets/<name>``, ``api.soundcloud.com/playlists/<id>``)
resolve through :meth:`SoundCloudSource.register_set` to their playable
tracks in order (the ``/player/`` page plays them): the tracks api-v2 sends
only as ids are fetched in bounded ``/tracks?ids=`` batches, at most
``MAX_SET_TRACKS`` tracks, and private or unplayable ones are skipped.

Errors, all ``ZtreamError``s and nothing cached for them: 404 for removed or
private tracks (SoundCloud answers 404 for those), 403 for refused or
not-streamable ones, 451 (:class:`Unavailable`) for geo-blocked ones
(``policy: BLOCK``, ``access: blocked``), 503 with ``retry_after``
(:class:`RateLimited`) when SoundCloud answers 429; that also starts a back
off during which no request is sent to SoundCloud at all.
"""

from __future__ import annotations

from .client import SiteEndpoints
from .errors import RateLimited, Unavailable
from .parsing import (
    MAX_SET_TRACKS,
    SetInfo,
    SoundCloudRef,
    TrackInfo,
    choose_official_stream,
    choose_transcoding,
    find_client_id,
    find_script_urls,
    is_soundcloud_url,
    parse_soundcloud_set_url,
    parse_soundcloud_url,
    playlist_info,
    retry_after_seconds,
    track_info,
)
from .source import SoundCloudDisabled, SoundCloudSource

__all__ = [
    "MAX_SET_TRACKS",
    "RateLimited",
    "SetInfo",
    "SiteEndpoints",
    "SoundCloudDisabled",
    "SoundCloudRef",
    "SoundCloudSource",
    "TrackInfo",
    "Unavailable",
    "choose_official_stream",
    "choose_transcoding",
    "find_client_id",
    "find_script_urls",
    "is_soundcloud_url",
    "parse_soundcloud_set_url",
    "parse_soundcloud_url",
    "playlist_info",
    "retry_after_seconds",
    "track_info",
]
