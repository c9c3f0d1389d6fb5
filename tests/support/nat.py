"""Listeners behind NAT routers, and coturn (bench/nat.py, shared with the browser benchmark)."""

from bench.nat import (
    NETWORKS,
    PUBLIC_ADDRESS,
    PUBLIC_ADDRESS6,
    TOPOLOGIES,
    Coturn,
    Listener,
    NatTopology,
    Topology,
    pair_ends,
    require_nat,
)

__all__ = ["NETWORKS", "PUBLIC_ADDRESS", "PUBLIC_ADDRESS6", "TOPOLOGIES", "Coturn", "Listener", "NatTopology",
           "Topology", "pair_ends", "require_nat"]
