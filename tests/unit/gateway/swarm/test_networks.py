"""Where a listener is: the classifier, the ASN database, the configuration that builds them."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from gateway.config import ConfigError, config_from_dict
from gateway.swarm import make_networks
from gateway.swarm.networks import UNKNOWN_PLACE, AsnDatabase, Networks, Place, lan_key, scope
from tests.unit.gateway.swarm.test_control_socket import Peer, connect

PREFIXES = {
    "isp-a": ["203.0.113.0/24", "2001:db8:a::/48"],
    "campus": ["203.0.113.128/25"],  # inside isp-a's prefix: the more specific one wins
    "isp-b": ["198.51.100.0/24"],
}


def write_asn_database(path: Path, records: dict[str, dict[str, object]], *, ip_version: int = 6) -> Path:
    """A small MaxMind DB file: CIDR -> record, as GeoLite2-ASN shapes them."""
    writer = MMDBWriter(ip_version=ip_version, ipv4_compatible=ip_version == 6, database_type="GeoLite2-ASN",
                        description="ztream test ASN database")
    for cidr, record in records.items():
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))
    return path


def test_lan_keys() -> None:
    assert lan_key("203.0.113.7") == "203.0.113.7"
    assert lan_key("::ffff:203.0.113.7") == "203.0.113.7"  # an IPv4-mapped address is that IPv4 address
    # IPv6 has no NAT: a home's hosts share its /64, not an address.
    assert lan_key("2001:db8:1:2::5") == lan_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert lan_key("fe80::1%eth0") == "fe80::/64"
    assert lan_key(None) is None and lan_key("unknown") is None and lan_key("") is None


def test_prefixes_most_specific_first() -> None:
    n = Networks(PREFIXES)
    assert n.place("203.0.113.7") == Place("203.0.113.7", "net:isp-a")
    assert n.place("203.0.113.200").network == "net:campus"
    assert n.place("2001:db8:a:5::9") == Place("2001:db8:a:5::/64", "net:isp-a")
    assert n.place("198.51.100.1").network == "net:isp-b"
    assert n.place("192.0.2.1") == Place("192.0.2.1", None)
    assert n.place(None) == UNKNOWN_PLACE and n.place("not an address") == UNKNOWN_PLACE
    assert n and not Networks()


def test_a_prefix_under_two_names_belongs_to_the_first_in_order() -> None:
    assert Networks({"b": ["192.0.2.0/24"], "a": ["192.0.2.0/24"]}).place("192.0.2.9").network == "net:a"


def test_scopes() -> None:
    n = Networks(PREFIXES)
    a1, a2, b1 = n.place("203.0.113.7"), n.place("203.0.113.8"), n.place("198.51.100.1")
    assert scope(a1, n.place("203.0.113.7")) == "same_lan"
    assert scope(a1, a2) == "same_network"
    assert scope(a1, b1) == "other"
    # No network known for either: only the LAN can match.
    assert scope(n.place("192.0.2.1"), n.place("192.0.2.2")) == "other"
    assert scope(a1, UNKNOWN_PLACE) == scope(UNKNOWN_PLACE, a1) == "unknown"


def test_asn_database(tmp_path: Path) -> None:
    path = write_asn_database(tmp_path / "asn.mmdb", {
        "198.51.100.0/24": {"autonomous_system_number": 64500, "autonomous_system_organization": "ISP A"},
        "192.0.2.0/24": {"autonomous_system_number": 64501, "autonomous_system_organization": "ISP B"},
        "2001:db8:b::/48": {"autonomous_system_number": 64501, "autonomous_system_organization": "ISP B"},
        "100.64.0.0/10": {"asn": "AS64502"},  # IPinfo's shape
        "233.252.0.0/24": {"autonomous_system_organization": "no number"},
    })
    db = AsnDatabase(path)
    try:
        assert db.database_type == "GeoLite2-ASN"
        n = Networks({"campus": ["198.51.100.128/25"]}, db.asn)
        assert n.place("198.51.100.7").network == "as:64500"
        assert n.place("198.51.100.200").network == "net:campus"  # the operator's prefixes win
        assert n.place("192.0.2.1").network == n.place("2001:db8:b:1::1").network == "as:64501"
        assert n.place("100.64.1.1").network == "as:64502"
        assert n.place("233.252.0.1").network is None
        assert n.place("203.0.113.1").network is None  # not in the database
        assert n.place("::ffff:192.0.2.1").network == "as:64501"
    finally:
        db.close()


def test_an_ipv4_database_has_no_network_for_ipv6(tmp_path: Path) -> None:
    path = write_asn_database(tmp_path / "v4.mmdb", {"192.0.2.0/24": {"autonomous_system_number": 64501}},
                              ip_version=4)
    db = AsnDatabase(path)
    try:
        assert db.asn(ipaddress.ip_address("192.0.2.9")) == 64501
        assert db.asn(ipaddress.ip_address("2001:db8::1")) is None  # maxminddb refuses: no network, no error
    finally:
        db.close()


def test_configuration_builds_the_classifier(tmp_path: Path) -> None:
    path = write_asn_database(tmp_path / "asn.mmdb", {"192.0.2.0/24": {"autonomous_system_number": 64501}})
    config = config_from_dict({"p2p": {"networks": {"isp-a": ["203.0.113.0/24"]}, "asn_database": str(path)}})
    networks, database = make_networks(config)
    assert database is not None
    try:
        assert networks.place("203.0.113.1").network == "net:isp-a"
        assert networks.place("192.0.2.1").network == "as:64501"
    finally:
        database.close()
    networks, database = make_networks(config_from_dict({}))
    assert database is None and not networks


def test_an_unreadable_database_stops_the_gateway(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database at all" * 10)
    for path in (junk, tmp_path / "missing.mmdb"):
        with pytest.raises(ConfigError, match=r"^p2p\.asn_database: .*not a readable MaxMind DB"):
            make_networks(config_from_dict({"p2p": {"asn_database": str(path)}}))


@pytest.mark.parametrize(("networks", "message"), [
    ({"a": ["1.2.3.0/24"], "b": ["1.2.3.0/24"]}, r"p2p\.networks: 1\.2\.3\.0/24 is listed under both 'a' and 'b'"),
    ({"a b": ["1.2.3.0/24"]}, r"is not a network name"),
    ({"a": ["nope"]}, r"p2p\.networks\.a\[0\]: 'nope' is not an IP address or CIDR"),
    ({"a": "1.2.3.0/24"}, r"p2p\.networks\.a: expected a list"),
])
def test_bad_networks_name_the_key(networks: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"p2p": {"networks": networks}})


async def test_a_gateway_counts_bytes_by_scope_from_its_database(make_gateway: Any, tmp_path: Path) -> None:
    """Through the whole gateway: config file, client addresses forwarded by a trusted
    proxy, the ASN database, the tracker's choice and the metric's scope."""
    path = write_asn_database(tmp_path / "asn.mmdb", {
        "192.0.2.0/24": {"autonomous_system_number": 64501},
        "198.51.100.0/24": {"autonomous_system_number": 64502},
    })
    gw = await make_gateway(library=None, server={"trusted_proxies": ["127.0.0.1/32"]},
                            p2p={"stun_port": 0, "asn_database": str(path)})

    async def listener(address: str) -> Peer:
        return await connect(gw, headers={"X-Forwarded-For": address})

    far, near, me = await listener("198.51.100.1"), await listener("192.0.2.20"), await listener("192.0.2.10")
    for holder in (far, near):
        await holder.send({"type": "have", "track": "t", "rendition": "r", "complete": True})
    answer = await me.ask({"type": "want", "track": "t", "rendition": "r", "chunks": [0]})
    assert [p["peer_id"] for p in answer["peers"]] == [near.id]  # the same AS only
    await me.send({"type": "stats", "p2p_down_bytes": 5000, "sources": {near.id: 3000, far.id: 2000}})
    prefix = 'ztream_peer_bytes_total{scope="'
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        text = await (await gw.get("/metrics")).text()
        lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith(prefix))
        if float(lines[prefix + 'same_network"}']):
            break
        assert asyncio.get_running_loop().time() < deadline, lines
        await asyncio.sleep(0.05)
    # The far holder was never introduced to `me`: its claimed share is unknown.
    assert {k[len(prefix):-2]: float(v) for k, v in lines.items()} == {
        "same_lan": 0, "same_network": 3000, "other": 0, "unknown": 2000}
