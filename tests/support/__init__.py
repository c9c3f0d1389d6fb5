"""The tests' shared harness.

What the shipped benchmarks drive too (Chromium and Firefox, network
namespaces, NAT routers, the browser P2P world, the ``ztream serve``
subprocess, generated audio) lives in ``bench/`` and is re-exported here, so
there is one copy and ``bench`` never imports ``tests``. What only tests use
(in-process gateways, loopback upstreams, the fake SoundCloud, Redis and nginx
for clusters) lives here. Fixtures are in ``tests/conftest.py``.
"""
