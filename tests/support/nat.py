"""Listeners behind NAT routers, and coturn (bench/nat.py, shared with the browser benchmark)."""

from bench.nat import PUBLIC_ADDRESS, Coturn, Listener, NatTopology, require_nat

__all__ = ["PUBLIC_ADDRESS", "Coturn", "Listener", "NatTopology", "require_nat"]
