"""Chromium for the Playwright tests (bench/browser.py: the benchmarks launch it the same way).

Also what the fMP4 tests of every browser share: the renditions' MSE types and
a page script that makes a browser's MSE take only one of them.
"""

import json

from bench.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CLIENT_DIR,
    ROOT,
    ErrorLog,
    HostSite,
    LiveEdgeLog,
    chromium_path,
    launch,
    require_chromium,
    serve_on_loopback,
    until,
    wait_for,
)

__all__ = [
    "CHROMIUM", "CHROMIUM_ARGS", "CLIENT_DIR", "ROOT", "ErrorLog", "HostSite", "LiveEdgeLog", "chromium_path",
    "launch", "require_chromium", "serve_on_loopback", "until", "wait_for", "RENDITION_MIMES", "only_mse_type",
]

# The fMP4 renditions' MSE types (the manifest's ``mime``), by rendition id.
RENDITION_MIMES = {"fmp4-opus": 'audio/mp4; codecs="Opus"', "fmp4-aac": 'audio/mp4; codecs="mp4a.40.2"'}


def only_mse_type(mime: str) -> str:
    """A page script (run before the player's): this page's MSE takes ``mime`` and nothing else,
    as a browser that does not take WebM/Opus (Safari before 17.4) answers for WebM."""
    return f"""
const taken = {json.dumps(mime)};
const asks = MediaSource.isTypeSupported.bind(MediaSource);
MediaSource.isTypeSupported = (type) => type === taken && asks(type);
"""
