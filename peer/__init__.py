"""The headless peer: the browser's P2P protocol spoken with aiortc."""
