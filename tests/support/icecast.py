"""A real Icecast on loopback, fed by ffmpeg in real time (bench/icecast.py, shared with ``ztream bench live``)."""

from __future__ import annotations

from bench.icecast import CODECS, Icecast, IcecastSource, icecast_binary, start_icecast

__all__ = ["CODECS", "Icecast", "IcecastSource", "icecast_binary", "start_icecast"]
