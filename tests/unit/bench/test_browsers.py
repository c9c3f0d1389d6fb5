"""The pure parts of ``ztream bench browsers``: where peer bytes came from, and what could stay near."""

from __future__ import annotations

from bench.browsers import Row, Scenario, gateway_scopes, scope_of


def row(network: str, **scopes: int) -> Row:
    return Row("chromium", 0.0, 0, sum(scopes.values()), 0, 0, [], [], network=network,
               scopes={"same_lan": 0, "same_network": 0, "other": 0, **scopes})


def test_scope_of_a_sender_by_its_public_address_then_its_network() -> None:
    lans = {"a": "198.18.16.2", "b": "198.18.16.2", "c": "198.18.17.2", "d": "198.18.32.2"}
    networks = {"a": "isp-a", "b": "isp-a", "c": "isp-a", "d": "isp-b"}
    assert scope_of("b", "a", networks, lans) == "same_lan"
    assert scope_of("c", "a", networks, lans) == "same_network"
    assert scope_of("d", "a", networks, lans) == "other"
    assert scope_of("stranger", "a", networks, lans) == "other"


def test_gateway_scopes_sums_the_scope_label_and_is_empty_without_it() -> None:
    metrics = {
        'ztream_peer_bytes_total{scope="same_network",track="x"}': 10.0,
        'ztream_peer_bytes_total{scope="same_network",track="y"}': 5.0,
        'ztream_peer_bytes_total{scope="other"}': 2.0,
        'ztream_server_bytes_total{scope="other"}': 99.0,
    }
    assert gateway_scopes(metrics) == {"same_network": 15.0, "other": 2.0}
    assert gateway_scopes({"ztream_peer_bytes_total": 7.0}) == {}


def test_within_network_share_and_the_most_this_order_allows() -> None:
    two_isps = Scenario("chromium", 6, 3.0, 30.0, "two-isps")
    two_isps.rows = [row("isp-a"), row("isp-b", other=4), row("isp-a", same_network=4), row("isp-b", same_network=4),
                     row("isp-a", same_network=2, other=2), row("isp-b", same_lan=4)]
    summary = two_isps.summary()
    assert summary["scopes"] == {"same_lan": 4, "same_network": 10, "other": 6}
    assert summary["within_network"] == 0.7
    # isp-b's first listener has no holder in its own network: 1 of 5 must cross
    assert summary["within_network_ceiling"] == 0.8
    office = Scenario("chromium", 3, 3.0, 30.0, "office")
    office.rows = [row("198.18.0.11"), row("198.18.0.11", same_lan=4), row("198.18.0.11", same_lan=4)]
    assert office.summary()["within_network"] == office.summary()["within_network_ceiling"] == 1.0
    bridge = Scenario("chromium", 3, 3.0, 30.0, "bridge")
    bridge.rows = [row("198.18.0.11"), row("198.18.0.12", other=4), row("198.18.0.13", other=4)]
    assert bridge.summary()["within_network"] == bridge.summary()["within_network_ceiling"] == 0.0
