"""Loopback-only network namespaces (bench/netns.py, shared with the browser benchmark)."""

from bench.netns import IP, WEBRTC_ARGS, NamespacedGateway, NetNamespace, require_netns

__all__ = ["IP", "WEBRTC_ARGS", "NamespacedGateway", "NetNamespace", "require_netns"]
