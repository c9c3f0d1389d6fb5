"""The manifest says the expected duration while the transcode runs, marked as an estimate."""

from __future__ import annotations

from gateway.media.catalog import Track
from gateway.media.flight import Flight
from gateway.media.upstream import SizedStream
from transcode.duration import InputInfo
from transcode.ffmpeg import Rendition

RENDITION = Rendition(id="r1", binary="ffmpeg", version="test", argv=("ffmpeg",), bitrate=96_000, chunk_seconds=2.0)
TRACK = Track(id="t1", source="url", locator="http://example.org/a.mp3", title="a")


def chunk(index: int, start: float, duration: float = 2.0) -> dict[str, object]:
    return {"index": index, "start": start, "duration": duration, "size": 10, "sha256": "0" * 64}


def test_live_manifest_carries_the_estimate() -> None:
    flight = Flight(track=TRACK, rendition=RENDITION)
    flight.init = {"size": 1, "sha256": "0" * 64}
    flight.chunks = [chunk(0, 0.0), chunk(1, 2.0), chunk(2, 4.0)]  # type: ignore[list-item]
    live = flight.manifest(complete=False)
    # Nothing known of the input: no estimate, and duration stays null as before.
    assert live["duration"] is None and live["expected_duration"] is None and live["duration_estimated"] is False
    flight.input.bitrate, flight.input.size = 128_000, 480_000
    live = flight.manifest(complete=False)
    assert live["duration"] is None  # old clients: unchanged
    assert live["expected_duration"] == 30.0 and live["duration_estimated"] is True
    flight.input.duration = 29.5
    assert flight.manifest(complete=False)["expected_duration"] == 29.5


def test_an_estimate_below_what_exists_is_raised_to_it() -> None:
    flight = Flight(track=TRACK, rendition=RENDITION, input=InputInfo(duration=3.0))
    flight.chunks = [chunk(0, 0.0), chunk(1, 2.0), chunk(2, 4.0)]  # type: ignore[list-item]
    assert flight.manifest(complete=False)["expected_duration"] == 6.0


def test_complete_manifest_says_the_decoded_duration() -> None:
    flight = Flight(track=TRACK, rendition=RENDITION, input=InputInfo(duration=30.5))
    flight.chunks = [chunk(0, 0.0), chunk(1, 2.0, 1.25)]  # type: ignore[list-item]
    done = flight.manifest(complete=True)
    assert done["duration"] == 3.25 and done["expected_duration"] == 3.25 and done["duration_estimated"] is False


async def test_sized_stream_says_its_size_before_the_first_piece() -> None:
    sized = SizedStream()
    seen: list[int | None] = []

    async def body():  # type: ignore[no-untyped-def]
        sized.size = 1234
        yield b"a"
        yield b"b"

    sized.attach(body())
    async for piece in sized:
        seen.append(sized.size)
        assert piece in (b"a", b"b")
    assert seen == [1234, 1234]
    await sized.aclose()
