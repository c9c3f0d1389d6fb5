"""The fair-slot core: shares per client and per host, the reserved slots, the speed rule."""

from __future__ import annotations

from gateway.media.fairness import Claim, SlotBook, SlotLimits, behind_realtime, client_group


def test_client_group_is_the_ipv4_address_or_the_ipv6_64() -> None:
    assert client_group("192.0.2.7") == "192.0.2.7"
    assert client_group("2001:db8:1:2:aaaa::1") == client_group("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_group("2001:db8:1:3::1") != client_group("2001:db8:1:2::1")
    assert client_group("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_group(None) is None


def test_one_client_holds_at_most_its_share_of_running_and_waiting() -> None:
    book = SlotBook(SlotLimits(max_concurrent=4, reserved=1, per_client=2))
    assert book.add(Claim("a", client="c1")) and book.add(Claim("b", client="c1"))
    assert book.refusal(Claim("c", client="c1")) == "too_many_transcodes"
    assert book.refusal(Claim("c", client="c2")) is None
    book.release("a")
    assert book.refusal(Claim("c", client="c1")) is None


def test_one_upstream_host_holds_at_most_its_share() -> None:
    book = SlotBook(SlotLimits(max_concurrent=8, per_host=2))
    book.add(Claim("a", client="c1", host="slow.example"))
    book.add(Claim("b", client="c2", host="slow.example"))
    assert book.refusal(Claim("c", client="c3", host="slow.example")) == "upstream_host_busy"
    assert book.refusal(Claim("c", client="c3", host="fast.example")) is None


def test_url_tracks_never_take_the_reserved_slot_and_library_tracks_go_first() -> None:
    book = SlotBook(SlotLimits(max_concurrent=2, reserved=1))
    assert book.add(Claim("u1", client="c1"))
    assert not book.add(Claim("u2", client="c2"))  # the last slot is reserved
    assert book.add(Claim("lib", privileged=True))  # a library track starts at once
    assert not book.add(Claim("lib2", privileged=True))
    # When the library track ends, the waiting library track goes before the URL track.
    assert [c.key for c in book.release("lib")] == ["lib2"]
    assert [c.key for c in book.release("lib2")] == []  # the reserved slot stays free of URLs
    assert [c.key for c in book.release("u1")] == ["u2"]


def test_each_queue_holds_at_most_max_concurrent() -> None:
    book = SlotBook(SlotLimits(max_concurrent=2, reserved=1))
    book.add(Claim("u0"))
    book.add(Claim("u1"))
    book.add(Claim("u2"))
    assert book.refusal(Claim("u3")) == "overloaded"
    assert book.refusal(Claim("lib", privileged=True)) is None  # its own queue is empty
    book.release("u2")  # a waiting claim that gives up leaves the queue
    assert book.refusal(Claim("u3")) is None


def test_one_slot_is_never_reserved_away() -> None:
    assert SlotLimits(max_concurrent=1, reserved=1).open_slots == 1
    assert SlotLimits(max_concurrent=4, reserved=1).open_slots == 3


def test_behind_realtime_after_the_grace() -> None:
    assert not behind_realtime(produced=0.0, held=9.0, grace=10.0, min_speed=1.0)
    assert behind_realtime(produced=1.6, held=12.0, grace=10.0, min_speed=1.0)  # a 0.16x trickle
    assert not behind_realtime(produced=100.0, held=12.0, grace=10.0, min_speed=1.0)
    assert not behind_realtime(produced=8.0, held=30.0, grace=10.0, min_speed=0.0)  # off
