"""Listeners behind NAT routers, built from network namespaces for a test.

Theory of operation
-------------------
Real listeners sit behind home routers. This module builds that world on one
machine, with addresses from 198.18.0.0/15 (the benchmarking range) that
exist only inside namespaces the test made::

    public namespace (gateway, STUN, TURN)          198.18.0.1/24 on bridge br0
      |-- router 1: wan 198.18.0.11 -- NAT -- lan 198.19.1.1 -- listener 1: 198.19.1.2
      |-- router 2: wan 198.18.0.12 -- NAT -- lan 198.19.2.1 -- listener 2: 198.19.2.2
      ...

Each router masquerades its LAN behind its WAN address and drops unsolicited
packets from the WAN side (``--ctstate NEW`` on INPUT and FORWARD), so a
listener can be reached only through a mapping it opened itself.

- ``nat="eim"`` (endpoint-independent mapping, a typical home NAT): one
  source port keeps its public port whatever the destination; STUN's
  server-reflexive address is the one peers can use, and hole punching
  works. The INPUT drop rule matters: without it the first inbound check
  packet pins a conntrack entry and the router then picks a new port for the
  next outgoing packet (see docs/p2p.md).
- ``nat="symmetric"``: ``MASQUERADE --random-fully`` picks a fresh public port
  for every destination, so the address STUN reports is useless to peers and
  only TURN (a relay in the public namespace) connects.

Listeners' namespaces have a default route through their router; the public
namespace has no route into any LAN. Every namespace is deleted by
``close()``. Requires root and iptables.

How the public side is wired is the topology (``kind``), a parameter of the
same tests:

- ``bridge``: as drawn above; the gateway binds 198.18.0.1, the address on
  the interface its answers leave by.
- ``vip``: 198.18.0.1 is a service address on the public namespace's
  loopback (a load balancer's VIP, anycast, a host with several interfaces);
  each router's WAN is its own link (198.18.(100+i).2, the public side
  .1), and the public namespace routes between them. The gateway binds the
  wildcard, so an answer sent without a chosen source would leave from
  198.18.(100+i).1 and the router would drop it.
- ``dualstack``: the bridge, plus IPv6: 2001:db8:18::1/64 on the bridge, each
  home a routed prefix 2001:db8:19:i::/64 behind its router's stateful
  firewall (no NAT for IPv6); the gateway binds the dual-stack wildcard.
- ``office`` (an office, a campus, a household): ONE router (WAN
  198.18.0.11 on the bridge) and every listener on its LAN, a bridge
  198.19.1.0/24 (listener k at 198.19.1.(2+k)): one public address for all,
  and no hairpinning (a packet from the LAN to the router's public address
  is dropped, as most home and office routers do), so a pair of the
  listeners' server-reflexive addresses never connects; only their host
  candidates (mDNS names, resolved by multicast on the LAN) do. A per-listener
  MASQUERADE rule gives each listener its own ``nat`` kind.
- ``two-isps``: two access networks, ``isp-a`` 198.18.16.0/20 and ``isp-b``
  198.18.32.0/20 (``NETWORKS``), each an ISP router namespace on the bridge
  (198.18.0.2 and .3; the public namespace routes each prefix to it and
  forwards between them, like an exchange). Listener i (0-based) is in
  ``isp-a`` when i is even, ``isp-b`` when odd (so a staggered start has
  holders in both networks early); its home router's WAN is its own link
  to its ISP, 198.18.(16+k).2 or 198.18.(32+k).2 for the ISP's k-th home: a
  different /24 for every home, so nothing that groups addresses by /24
  puts two homes of one ISP together by accident. ``Listener.network`` and
  ``NatTopology.networks`` name them (for ``[p2p.networks]``). The gateway
  binds 198.18.0.1 on the bridge.

Every topology numbers listener i's LAN 198.19.(i+1).0/24 (the office: all on
198.19.1.0/24), its router's WAN in ``Listener.wan_address``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.harness import MissingTool, terminate
from bench.netns import IP, NetNamespace

__all__ = ["NatTopology", "Listener", "Coturn", "NETWORKS", "PUBLIC_ADDRESS", "PUBLIC_ADDRESS6", "TOPOLOGIES",
           "Topology", "pair_ends", "require_nat"]

PUBLIC_ADDRESS = "198.18.0.1"
# IPv6 documentation prefixes (RFC 3849), only inside the test's namespaces.
PUBLIC_PREFIX6 = "2001:db8:18::"
PUBLIC_ADDRESS6 = f"{PUBLIC_PREFIX6}1"
HOME_PREFIX6 = "2001:db8:19:"
IPTABLES = shutil.which("iptables") or "/usr/sbin/iptables"
IP6TABLES = shutil.which("ip6tables") or "/usr/sbin/ip6tables"

Nat = Literal["eim", "symmetric"]
Topology = Literal["bridge", "vip", "dualstack", "office", "two-isps"]
TOPOLOGIES: tuple[Topology, ...] = ("bridge", "vip", "dualstack", "office", "two-isps")
# two-isps: each access network's prefix (the home routers' public addresses) and
# its router's address on the public bridge.
NETWORKS: dict[str, tuple[str, str]] = {"isp-a": ("198.18.16.0/20", "198.18.0.2"),
                                        "isp-b": ("198.18.32.0/20", "198.18.0.3")}

REFLEXIVE = frozenset({"srflx", "prflx"})


def pair_ends(kind: Topology) -> tuple[frozenset[str], frozenset[str]]:
    """The candidate types (local, remote) each end of a direct connection between two
    of ``kind``'s listeners can report for its selected pair (``getStats``).

    Across NATs the remote end is always reflexive: a host address behind another
    router is unreachable (and hidden behind an mDNS name no other LAN resolves); the
    local end is the host the packets leave from or a reflexive one. In the office
    both ends are hosts on one LAN (their mDNS names resolve there; peer-reflexive
    when a check arrives before the name is resolved), never server-reflexive: the
    router does not hairpin.
    """
    if kind == "office":
        return frozenset({"host", "prflx"}), frozenset({"host", "prflx"})
    return frozenset({"host"}) | REFLEXIVE, REFLEXIVE


def require_nat() -> None:
    """Fail (never skip) without iptables: `make test` installs it."""
    if not shutil.which("iptables"):
        raise MissingTool("NAT topologies need iptables (`make test` installs it)")


def _run(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, timeout=15)


@dataclass
class Listener:
    ns: NetNamespace
    router: NetNamespace
    lan_address: str
    wan_address: str
    nat: Nat
    address6: str | None = None  # the listener's IPv6 address (``dualstack``)
    network: str | None = None  # its access network (``two-isps``: a key of NETWORKS)


class NatTopology:
    """A public namespace and ``count`` listeners behind NAT routers (each its own,
    or one for all in ``office``), wired as ``kind`` (``TOPOLOGIES``; see the module
    docstring)."""

    def __init__(self, count: int, nat: Nat | list[Nat] = "eim", kind: Topology = "bridge") -> None:
        require_nat()
        if kind not in TOPOLOGIES:
            raise ValueError(f"unknown topology {kind!r}; one of {', '.join(TOPOLOGIES)}")
        kinds = nat if isinstance(nat, list) else [nat] * count
        self.kind = kind
        self.public = NetNamespace("zpub")
        self.listeners: list[Listener] = []
        self._spaces: list[NetNamespace] = [self.public]
        self._isps: dict[str, NetNamespace] = {}
        self._office: NetNamespace | None = None
        self._office_wan = ""
        try:
            pub = self.public.name
            if kind == "vip":
                # The public address is a service address on loopback; the namespace
                # routes between the homes' links like an ISP's core.
                _run(IP, "-n", pub, "addr", "add", f"{PUBLIC_ADDRESS}/32", "dev", "lo")
                _run(IP, "netns", "exec", pub, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            else:
                _run(IP, "-n", pub, "link", "add", "br0", "type", "bridge")
                _run(IP, "-n", pub, "addr", "add", f"{PUBLIC_ADDRESS}/24", "dev", "br0")
                if kind == "dualstack":
                    _run(IP, "-n", pub, "addr", "add", f"{PUBLIC_ADDRESS6}/64", "dev", "br0", "nodad")
                    _run(IP, "netns", "exec", pub, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
                _run(IP, "-n", pub, "link", "set", "br0", "up")
            if kind == "two-isps":
                _run(IP, "netns", "exec", pub, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
                # Between the ISPs the public namespace forwards on the bridge it came
                # in by: no redirects, so every packet between the networks crosses it.
                _run(IP, "netns", "exec", pub, "sysctl", "-q", "-w", "net.ipv4.conf.all.send_redirects=0")
                _run(IP, "netns", "exec", pub, "sysctl", "-q", "-w", "net.ipv4.conf.br0.send_redirects=0")
                for n, name in enumerate(NETWORKS, start=1):
                    self._isps[name] = self._add_isp(n, name)
            for i, nat_kind in enumerate(kinds, start=1):
                self.listeners.append(self._add_listener(i, nat_kind))
        except BaseException:
            self.close()
            raise

    @property
    def gateway_host(self) -> str:
        """The address the gateway binds here: the public one on the bridge, the
        wildcard where the host has several (as a multi-homed server does)."""
        return {"vip": "0.0.0.0", "dualstack": ""}.get(self.kind, PUBLIC_ADDRESS)

    @property
    def networks(self) -> dict[str, list[str]]:
        """The access networks' prefixes (name -> CIDRs, as ``[p2p.networks]`` takes them);
        empty but in ``two-isps``."""
        return {name: [NETWORKS[name][0]] for name in self._isps}

    def _add_isp(self, n: int, name: str) -> NetNamespace:
        """An ISP's router: its address on the public bridge, a route to it for its
        prefix there; its homes get their own links later (``_add_listener``)."""
        pub = self.public.name
        isp = NetNamespace("zisp")
        self._spaces.append(isp)
        prefix, uplink = NETWORKS[name]
        _run(IP, "-n", pub, "link", "add", f"x{n}", "type", "veth", "peer", "name", "uplink", "netns", isp.name)
        _run(IP, "-n", pub, "link", "set", f"x{n}", "master", "br0", "up")
        _run(IP, "-n", isp.name, "addr", "add", f"{uplink}/24", "dev", "uplink")
        _run(IP, "-n", isp.name, "link", "set", "uplink", "up")
        _run(IP, "-n", isp.name, "route", "add", "default", "via", PUBLIC_ADDRESS)
        _run(IP, "netns", "exec", isp.name, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        _run(IP, "-n", pub, "route", "add", prefix, "via", uplink)
        return isp

    def _wan_two_isps(self, i: int, router: NetNamespace) -> tuple[str, str]:
        """Home ``i``'s WAN: a link of its own to its ISP's router; (address, network)."""
        names = list(NETWORKS)
        network = names[(i - 1) % len(names)]
        k = (i - 1) // len(names)  # the ISP's k-th home (0-based)
        isp = self._isps[network]
        base = int(NETWORKS[network][0].split(".")[2])
        wan, gw = f"198.18.{base + k}.2", f"198.18.{base + k}.1"
        link = f"h{i}"
        _run(IP, "-n", isp.name, "link", "add", link, "type", "veth", "peer", "name", "wan", "netns", router.name)
        _run(IP, "-n", isp.name, "addr", "add", f"{gw}/24", "dev", link)
        _run(IP, "-n", isp.name, "link", "set", link, "up")
        _run(IP, "-n", router.name, "addr", "add", f"{wan}/24", "dev", "wan")
        _run(IP, "-n", router.name, "link", "set", "wan", "up")
        _run(IP, "-n", router.name, "route", "add", "default", "via", gw)
        return wan, network

    def _add_router(self, i: int) -> tuple[NetNamespace, str, str | None]:
        """Router ``i`` with its WAN wired as the topology wants; (router, WAN address, network)."""
        pub = self.public.name
        router = NetNamespace("zrt")
        self._spaces.append(router)
        network = None
        if self.kind == "two-isps":
            wan, network = self._wan_two_isps(i, router)
        elif self.kind == "vip":
            # WAN: the home's own point-to-point link to the public namespace.
            _run(IP, "-n", pub, "link", "add", f"p{i}", "type", "veth", "peer", "name", "wan", "netns", router.name)
            wan, isp = f"198.18.{100 + i}.2", f"198.18.{100 + i}.1"
            _run(IP, "-n", pub, "addr", "add", f"{isp}/24", "dev", f"p{i}")
            _run(IP, "-n", pub, "link", "set", f"p{i}", "up")
            _run(IP, "-n", router.name, "addr", "add", f"{wan}/24", "dev", "wan")
            _run(IP, "-n", router.name, "link", "set", "wan", "up")
            _run(IP, "-n", router.name, "route", "add", "default", "via", isp)
        else:
            # WAN: a veth from the router to the public bridge.
            _run(IP, "-n", pub, "link", "add", f"p{i}", "type", "veth", "peer", "name", "wan", "netns", router.name)
            wan = f"198.18.0.{10 + i}"
            _run(IP, "-n", pub, "link", "set", f"p{i}", "master", "br0", "up")
            _run(IP, "-n", router.name, "addr", "add", f"{wan}/24", "dev", "wan")
            _run(IP, "-n", router.name, "link", "set", "wan", "up")
        inside = [IP, "netns", "exec", router.name]
        _run(*inside, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        for chain in ("INPUT", "FORWARD"):
            _run(*inside, IPTABLES, "-A", chain, "-i", "wan", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP")
        return router, wan, network

    def _masquerade(self, router: NetNamespace, host: str, kind: Nat) -> None:
        """``host``'s packets leave by the router's WAN address (per host, so that the
        office's listeners can each have their own ``kind``)."""
        masquerade = ["-t", "nat", "-A", "POSTROUTING", "-s", f"{host}/32", "-o", "wan", "-j", "MASQUERADE"]
        if kind == "symmetric":
            masquerade.append("--random-fully")
        _run(IP, "netns", "exec", router.name, IPTABLES, *masquerade)

    def _office_router(self) -> tuple[NetNamespace, str]:
        """The office's one router, made for its first listener: its LAN a bridge."""
        if self._office is None:
            router, wan, _ = self._add_router(1)
            _run(IP, "-n", router.name, "link", "add", "lan", "type", "bridge")
            _run(IP, "-n", router.name, "addr", "add", "198.19.1.1/24", "dev", "lan")
            _run(IP, "-n", router.name, "link", "set", "lan", "up")
            # No hairpinning: what the LAN sends to the router's public address is
            # dropped (no reflection back into the LAN, no ICMP answer either).
            _run(IP, "netns", "exec", router.name, IPTABLES, "-A", "INPUT", "-i", "lan", "-d", wan, "-j", "DROP")
            self._office = router
            self._office_wan = wan
        return self._office, self._office_wan

    def _add_listener(self, i: int, kind: Nat) -> Listener:
        home = NetNamespace("zln")
        self._spaces.append(home)
        network = None
        if self.kind == "office":
            router, wan = self._office_router()
            lan, host = "198.19.1.1", f"198.19.1.{1 + i}"
            port = f"l{i}"
            _run(IP, "-n", router.name, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", home.name)
            _run(IP, "-n", router.name, "link", "set", port, "master", "lan", "up")
        else:
            router, wan, network = self._add_router(i)
            lan, host = f"198.19.{i}.1", f"198.19.{i}.2"
            # LAN: a veth from the router to the listener's own namespace.
            _run(IP, "-n", router.name, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", home.name)
            _run(IP, "-n", router.name, "addr", "add", f"{lan}/24", "dev", "lan")
            _run(IP, "-n", router.name, "link", "set", "lan", "up")
        _run(IP, "-n", home.name, "addr", "add", f"{host}/24", "dev", "eth0")
        _run(IP, "-n", home.name, "link", "set", "eth0", "up")
        _run(IP, "-n", home.name, "route", "add", "default", "via", lan)
        self._masquerade(router, host, kind)
        address6 = self._add_ipv6(i, router, home) if self.kind == "dualstack" else None
        return Listener(home, router, host, wan, kind, address6, network)

    def _add_ipv6(self, i: int, router: NetNamespace, home: NetNamespace) -> str:
        """Routed IPv6 for home ``i`` (no NAT: a prefix of its own behind the
        router's stateful firewall, which drops what the home did not open)."""
        wan6, prefix = f"{PUBLIC_PREFIX6}{10 + i:x}", f"{HOME_PREFIX6}{i:x}::"
        _run(IP, "-n", router.name, "addr", "add", f"{wan6}/64", "dev", "wan", "nodad")
        _run(IP, "-n", router.name, "addr", "add", f"{prefix}1/64", "dev", "lan", "nodad")
        _run(IP, "-n", router.name, "-6", "route", "add", "default", "via", PUBLIC_ADDRESS6)
        _run(IP, "-n", home.name, "addr", "add", f"{prefix}2/64", "dev", "eth0", "nodad")
        _run(IP, "-n", home.name, "-6", "route", "add", "default", "via", f"{prefix}1")
        _run(IP, "-n", self.public.name, "-6", "route", "add", f"{prefix}/64", "via", wan6)
        inside = [IP, "netns", "exec", router.name]
        _run(*inside, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
        for chain in ("INPUT", "FORWARD"):
            _run(*inside, IP6TABLES, "-A", chain, "-i", "wan", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP")
        return f"{prefix}2"

    def close(self) -> None:
        for space in reversed(self._spaces):
            space.close()
        self._spaces.clear()


class Coturn:
    """A real coturn (Debian ``turnserver``) on the public namespace, with
    ``use-auth-secret``: it accepts the credentials the gateway mints
    (gateway/nat/turn.py) and nothing else. Relays on PUBLIC_ADDRESS."""

    def __init__(self, public: NetNamespace, secret: str, directory: Path, port: int = 3478) -> None:
        binary = shutil.which("turnserver")
        if binary is None:
            raise MissingTool("the TURN tests need coturn's turnserver (`make test` installs coturn)")
        self.url = f"turn:{PUBLIC_ADDRESS}:{port}?transport=udp"
        self.log_path = directory / "turnserver.log"
        argv = [
            *public.exec_prefix, binary, "-n", f"--listening-ip={PUBLIC_ADDRESS}", f"--relay-ip={PUBLIC_ADDRESS}",
            f"--listening-port={port}", "--min-port=49152", "--max-port=49407",
            "--use-auth-secret", f"--static-auth-secret={secret}", "--realm=ztream.test",
            "--fingerprint", "--no-tls", "--no-dtls", "--no-cli", "--no-tcp-relay",
            "--log-file=stdout", "--simple-log", f"--pidfile={directory / 'turnserver.pid'}",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        listening = [*public.exec_prefix, shutil.which("ss") or "/usr/bin/ss", "-Hulnp"]
        while f"{PUBLIC_ADDRESS}:{port} " not in subprocess.run(listening, capture_output=True, text=True, timeout=5).stdout:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"turnserver did not start: {self.log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        terminate(self.proc)
