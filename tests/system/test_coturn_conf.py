"""The shipped deploy/coturn/turnserver.conf denies every peer address that is not public unicast."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "coturn" / "turnserver.conf"

# Every special-purpose range a relay must never reach (IANA IPv4/IPv6
# special-purpose registries, multicast, reserved, and the IPv6 forms that
# lead back into IPv4: mapped, NAT64, 6to4).
NOT_PUBLIC = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23",
    "2001::/32", "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
]
PUBLIC = ["1.1.1.1", "8.8.8.8", "100.128.0.1", "172.32.0.1", "198.20.0.1", "2606:4700::1111", "2a00:1450::1"]


def denied_ranges() -> list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    ranges = []
    for line in CONF.read_text().splitlines():
        if line.startswith("denied-peer-ip="):
            value = line.split("=", 1)[1].strip()
            first, _, last = value.partition("-")
            a = ipaddress.ip_address(first)
            ranges.append((a, ipaddress.ip_address(last) if last else a))
    return ranges


def covered(network: str) -> bool:
    """Whether the union of the denied ranges covers the whole of ``network``."""
    net = ipaddress.ip_network(network)
    spans = sorted((int(a), int(b)) for a, b in denied_ranges() if a.version == net.version)
    point = int(net.network_address)
    for a, b in spans:
        if a <= point <= b:
            point = b + 1
        if point > int(net.broadcast_address):
            return True
    return False


def test_every_non_public_range_is_denied_and_public_addresses_are_not() -> None:
    missing = [n for n in NOT_PUBLIC if not covered(n)]
    assert not missing, missing
    for address in PUBLIC:
        a = ipaddress.ip_address(address)
        assert not any(lo.version == a.version and lo <= a <= hi for lo, hi in denied_ranges()), address
    assert "no-multicast-peers" in CONF.read_text().splitlines()


def test_real_coturn_reads_every_denied_range(tmp_path: Path) -> None:
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("this test needs coturn's turnserver (`make system-deps` installs coturn)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "turnserver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-c", str(CONF), "--listening-ip=127.0.0.1", f"--listening-port={port}",
             "--relay-ip=127.0.0.1", f"--pidfile={tmp_path / 'turnserver.pid'}", "--log-file=stdout"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 10
        while "Total General servers" not in log.read_text(errors="replace") and "Relay ports" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    text = log.read_text(errors="replace")
    assert "Wrong address" not in text and "ERROR" not in text, text[-3000:]
