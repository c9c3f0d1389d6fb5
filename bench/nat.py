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
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.harness import MissingTool
from bench.netns import IP, NetNamespace

__all__ = ["NatTopology", "Listener", "Coturn", "PUBLIC_ADDRESS", "PUBLIC_ADDRESS6", "TOPOLOGIES", "Topology",
           "require_nat"]

PUBLIC_ADDRESS = "198.18.0.1"
# IPv6 documentation prefixes (RFC 3849), only inside the test's namespaces.
PUBLIC_PREFIX6 = "2001:db8:18::"
PUBLIC_ADDRESS6 = f"{PUBLIC_PREFIX6}1"
HOME_PREFIX6 = "2001:db8:19:"
IPTABLES = shutil.which("iptables") or "/usr/sbin/iptables"
IP6TABLES = shutil.which("ip6tables") or "/usr/sbin/ip6tables"

Nat = Literal["eim", "symmetric"]
Topology = Literal["bridge", "vip", "dualstack"]
TOPOLOGIES: tuple[Topology, ...] = ("bridge", "vip", "dualstack")


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


class NatTopology:
    """A public namespace and ``count`` listeners, each behind its own NAT router,
    wired as ``kind`` (``TOPOLOGIES``; see the module docstring)."""

    def __init__(self, count: int, nat: Nat | list[Nat] = "eim", kind: Topology = "bridge") -> None:
        require_nat()
        kinds = nat if isinstance(nat, list) else [nat] * count
        self.kind = kind
        self.public = NetNamespace("zpub")
        self.listeners: list[Listener] = []
        self._spaces: list[NetNamespace] = [self.public]
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
            for i, nat_kind in enumerate(kinds, start=1):
                self.listeners.append(self._add_listener(i, nat_kind))
        except BaseException:
            self.close()
            raise

    @property
    def gateway_host(self) -> str:
        """The address the gateway binds here: the public one on the bridge, the
        wildcard where the host has several (as a multi-homed server does)."""
        return {"bridge": PUBLIC_ADDRESS, "vip": "0.0.0.0", "dualstack": ""}[self.kind]

    def _add_listener(self, i: int, kind: Nat) -> Listener:
        pub = self.public.name
        router = NetNamespace("zrt")
        self._spaces.append(router)
        home = NetNamespace("zln")
        self._spaces.append(home)
        lan, host = f"198.19.{i}.1", f"198.19.{i}.2"
        _run(IP, "-n", pub, "link", "add", f"p{i}", "type", "veth", "peer", "name", "wan", "netns", router.name)
        if self.kind == "vip":
            # WAN: the home's own point-to-point link to the public namespace.
            wan, isp = f"198.18.{100 + i}.2", f"198.18.{100 + i}.1"
            _run(IP, "-n", pub, "addr", "add", f"{isp}/24", "dev", f"p{i}")
            _run(IP, "-n", pub, "link", "set", f"p{i}", "up")
            _run(IP, "-n", router.name, "addr", "add", f"{wan}/24", "dev", "wan")
            _run(IP, "-n", router.name, "link", "set", "wan", "up")
            _run(IP, "-n", router.name, "route", "add", "default", "via", isp)
        else:
            # WAN: a veth from the router to the public bridge.
            wan = f"198.18.0.{10 + i}"
            _run(IP, "-n", pub, "link", "set", f"p{i}", "master", "br0", "up")
            _run(IP, "-n", router.name, "addr", "add", f"{wan}/24", "dev", "wan")
            _run(IP, "-n", router.name, "link", "set", "wan", "up")
        # LAN: a veth from the router to the listener's own namespace.
        _run(IP, "-n", router.name, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", home.name)
        _run(IP, "-n", router.name, "addr", "add", f"{lan}/24", "dev", "lan")
        _run(IP, "-n", router.name, "link", "set", "lan", "up")
        _run(IP, "-n", home.name, "addr", "add", f"{host}/24", "dev", "eth0")
        _run(IP, "-n", home.name, "link", "set", "eth0", "up")
        _run(IP, "-n", home.name, "route", "add", "default", "via", lan)
        inside = [IP, "netns", "exec", router.name]
        _run(*inside, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        masquerade = ["-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"]
        if kind == "symmetric":
            masquerade.append("--random-fully")
        _run(*inside, IPTABLES, *masquerade)
        for chain in ("INPUT", "FORWARD"):
            _run(*inside, IPTABLES, "-A", chain, "-i", "wan", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP")
        address6 = self._add_ipv6(i, router, home) if self.kind == "dualstack" else None
        return Listener(home, router, host, wan, kind, address6)

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
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
