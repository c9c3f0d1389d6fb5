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
namespace has no route into any LAN. The gateway and coturn bind 198.18.0.1.
Every namespace is deleted by ``close()``. Requires root and iptables.
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

__all__ = ["NatTopology", "Listener", "Coturn", "PUBLIC_ADDRESS", "require_nat"]

PUBLIC_ADDRESS = "198.18.0.1"
IPTABLES = shutil.which("iptables") or "/usr/sbin/iptables"

Nat = Literal["eim", "symmetric"]


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


class NatTopology:
    """A public namespace and ``count`` listeners, each behind its own NAT router."""

    def __init__(self, count: int, nat: Nat | list[Nat] = "eim") -> None:
        require_nat()
        kinds = nat if isinstance(nat, list) else [nat] * count
        self.public = NetNamespace("zpub")
        self.listeners: list[Listener] = []
        self._spaces: list[NetNamespace] = [self.public]
        try:
            pub = self.public.name
            _run(IP, "-n", pub, "link", "add", "br0", "type", "bridge")
            _run(IP, "-n", pub, "addr", "add", f"{PUBLIC_ADDRESS}/24", "dev", "br0")
            _run(IP, "-n", pub, "link", "set", "br0", "up")
            for i, kind in enumerate(kinds, start=1):
                self.listeners.append(self._add_listener(i, kind))
        except BaseException:
            self.close()
            raise

    def _add_listener(self, i: int, kind: Nat) -> Listener:
        pub = self.public.name
        router = NetNamespace("zrt")
        self._spaces.append(router)
        home = NetNamespace("zln")
        self._spaces.append(home)
        wan, lan, host = f"198.18.0.{10 + i}", f"198.19.{i}.1", f"198.19.{i}.2"
        # WAN: a veth from the router to the public bridge.
        _run(IP, "-n", pub, "link", "add", f"p{i}", "type", "veth", "peer", "name", "wan", "netns", router.name)
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
        return Listener(home, router, host, wan, kind)

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
