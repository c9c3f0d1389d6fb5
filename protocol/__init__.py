"""The protocol both ends speak: the control WebSocket's messages and their
text (``messages``, ``codec``), the DataChannel wire format (``wire``), the
limits (``limits``) and the values they carry (``values``).

It depends on nothing of ours and on nothing outside the standard library:
the gateway's swarm, the headless peer and the benchmarks import it, never
the other way round. The browser's twins (``client/control-protocol.js``,
``client/protocol.js``) are pinned to it by ``tests/vectors/``.
"""
