"""The headless peer: the browser's P2P protocol spoken with aiortc.

Pure cores, no I/O, time passed in: ``wire`` (the DataChannel format),
``scheduler`` (the download rules of ``client/scheduler.js``), ``link`` (one
DataChannel's protocol state and the upload slots), ``playback`` (the virtual
player), ``clock`` (audio time at any speed). I/O shells: ``node`` (asyncio +
aiortc + aiohttp), ``cache`` (chunks on disk), ``cli`` (``ztream peer``).
"""
