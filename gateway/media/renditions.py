"""The renditions a track can be served in, each its own ``MediaService``.

The default rendition (WebM/Opus) is the service the gateway always had: it
makes the extras (tags, artwork, waveform, loudness) and, in a cluster, pulls
from the node owning the track. The others (``fmp4-opus``, ``fmp4-aac``:
transcode.ffmpeg.RENDITIONS) are for Media Source Extensions that do not take
WebM/Opus; their service is made the first time a listener asks for one
(``?rendition=`` on the track's URLs, docs/http.md) and transcodes on this
node, without extras. Each is single-flight and cached like the default:
the store keys every init segment, chunk and manifest by the rendition id, so
renditions never mix and are evicted by the same LRU.

A manifest served says which renditions the track can have
(``renditions``: name and the MIME type a player gives
``MediaSource.isTypeSupported``), and an fMP4 manifest borrows the loudness
the default rendition's transcode measured, when that is known (the audio is
the same; only the container and codec differ).
"""

from __future__ import annotations

from collections.abc import Callable

from transcode.ffmpeg import DEFAULT_RENDITION, RENDITIONS

from ..errors import NotFound
from .catalog import Track
from .service import MediaService
from .types import Manifest, RenditionJSON

__all__ = ["Renditions", "RENDITION_LIST"]

RENDITION_LIST: list[RenditionJSON] = [{"name": k.name, "mime": k.mime} for k in RENDITIONS.values()]


class Renditions:
    """The media service of each rendition, the default's given, the others made on first use."""

    def __init__(self, default: MediaService, make: Callable[[str], MediaService]) -> None:
        self.default = default
        self._make = make
        self._services: dict[str, MediaService] = {DEFAULT_RENDITION: default}
        self._closed = False

    def service(self, name: str | None) -> MediaService:
        """The service of rendition ``name`` (None or "" for the default)."""
        if not name:
            return self.default
        found = self._services.get(name)
        if found is not None:
            # A live config change swaps the default's sources and limits: the others follow.
            found.sources, found.max_duration = self.default.sources, self.default.max_duration
            return found
        if name not in RENDITIONS:
            known = ", ".join(RENDITIONS)
            raise NotFound(f"no rendition {name!r} (there are {known})", code="rendition_not_found")
        if self._closed:
            return self.default  # its own calls refuse with shutting_down
        made = self._services[name] = self._make(name)
        return made

    def made(self) -> list[MediaService]:
        return list(self._services.values())

    async def manifest(self, track: Track, name: str | None, *, client: str | None = None) -> Manifest:
        """The rendition's manifest as served: with ``renditions`` and, for fMP4, the default's loudness.
        ``client`` is who asked, for the transcode slots' shares (``MediaService.manifest``)."""
        service = self.service(name)
        manifest: Manifest = {**await service.manifest(track, client=client)}  # a copy: the store keeps its own
        manifest["renditions"] = RENDITION_LIST
        if service is not self.default and manifest["loudness_lufs"] is None:
            measured = self.default.cached_manifest(track)
            if measured is not None:
                manifest["loudness_lufs"] = measured["loudness_lufs"]
                manifest["true_peak_db"] = measured["true_peak_db"]
        return manifest

    async def close(self) -> None:
        self._closed = True
        for service in self._services.values():
            await service.close()
