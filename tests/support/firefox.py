"""Firefox ESR and its PulseAudio sink (bench/firefox.py, shared with ``ztream bench browsers``)."""

from bench.firefox import FIREFOX, Firefox, PulseAudio, require_firefox

__all__ = ["FIREFOX", "Firefox", "PulseAudio", "require_firefox"]
