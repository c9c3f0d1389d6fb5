"""Chromium for the Playwright tests (bench/browser.py: the benchmarks launch it the same way)."""

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
    "launch", "require_chromium", "serve_on_loopback", "until", "wait_for",
]
