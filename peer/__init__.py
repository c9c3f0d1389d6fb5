"""The headless peer: the browser's P2P protocol spoken with aiortc.

Pure cores, no I/O, time passed in: ``core`` (the P2P rules of
``client/p2p.js``, pinned to it by ``tests/vectors/p2p/``), ``scheduler``
(the download rules of ``client/scheduler.js``), ``playback`` (the
playhead), ``player`` (the virtual player's state of one track), ``faults``
(what a benchmark makes a peer do wrong), ``report`` (what a peer did),
``clock`` (audio time at any speed). The messages and the DataChannel
format are the ``protocol`` package's. I/O shells: ``node`` (asyncio +
aiortc + aiohttp), ``rtc`` (a neighbour's aiortc objects), ``cache``
(chunks on disk), ``cli`` (``ztream peer``).
"""
