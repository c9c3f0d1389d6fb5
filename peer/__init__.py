"""The headless peer: the browser's P2P protocol spoken with aiortc.

Pure cores, no I/O, time passed in: ``core`` (the P2P rules of
``client/p2p.js``, pinned to it by ``tests/vectors/p2p/``), ``wire`` (the
DataChannel format), ``scheduler`` (the download rules of
``client/scheduler.js``), ``playback`` (the virtual player), ``clock`` (audio
time at any speed); ``link`` (one DataChannel's state and upload slots held
for a while) is kept for its users but no longer used by the node. I/O
shells: ``node`` (asyncio + aiortc + aiohttp), ``cache`` (chunks on disk),
``cli`` (``ztream peer``).
"""
