"""Which demuxer a live stream needs, from its first bytes. Pure.

A listener joining an Icecast mount gets the stream from wherever the
server's burst starts: mid-frame, with no ID3 header. ffmpeg's format probe
then scores the bytes low and keeps reading, up to its probe size, which an
upstream delivering in real time takes seconds to send (measured: the first
chunk of an MP3 mount 4 s after connecting, 0.7 s with ``-f mp3``). So the
ingest names the format when these bytes say it for sure, and leaves
ffmpeg's probe to the rest:

- ``ogg``: an Ogg page (``OggS``) at the start (Icecast starts Ogg listeners
  with the stream's header pages);
- ``mp3``: an ID3v2 tag at the start, or two MPEG audio frames in a row
  (a frame header, and another where its length says);
- ``aac``: two ADTS frames in a row;
- ``mpegts``: MPEG-TS packets (the ``0x47`` sync byte every 188 bytes), what
  a live HLS playlist's segments are most often. Checked before the frame
  search, which an ADTS or MP3 stream carried *inside* TS packets can fool
  (a TS stream named ``aac`` made ffmpeg decode nothing at all).

Returns None otherwise (too few bytes, or nothing certain). An ISO-BMFF
stream (fMP4 segments: ``ftyp``, ``styp``, ``moof`` first) is None too, for
the same reason, and ffmpeg's probe knows it from its first box.
"""

from __future__ import annotations

__all__ = ["sniff_format", "SNIFF_BYTES"]

# What sniff_format looks at, at most: enough for a frame of any of those.
SNIFF_BYTES = 16 * 1024

# MPEG-TS (ISO/IEC 13818-1): 188-byte packets, each starting with the sync byte 0x47.
_TS_PACKET = 188
# The box types an ISO-BMFF stream (MP4, an fMP4 segment) starts with.
_BMFF_FIRST_BOXES = frozenset({b"ftyp", b"styp", b"moof", b"sidx"})

# Bit rates (kbit/s) of MPEG-1 layer III and of MPEG-2/2.5 layer III; sample rates (Hz).
_MP3_BITRATES = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame_length(header: bytes) -> int | None:
    """The length of the MPEG-1/2/2.5 layer III frame starting with ``header`` (4 bytes), or None."""
    if header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version = (header[1] >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5, 1: reserved
    layer = (header[1] >> 1) & 3  # 1: layer III
    if version == 1 or layer != 1:
        return None
    bitrate = _MP3_BITRATES[1 if version == 3 else 2][header[2] >> 4]
    rate_index = (header[2] >> 2) & 3
    if not bitrate or rate_index == 3:
        return None
    rate = _MP3_RATES[version][rate_index]
    padding = (header[2] >> 1) & 1
    factor = 144 if version == 3 else 72
    return factor * bitrate * 1000 // rate + padding


def _adts_frame_length(header: bytes) -> int | None:
    """The length of the ADTS frame starting with ``header`` (6 bytes), or None."""
    if header[0] != 0xFF or header[1] & 0xF6 != 0xF0:  # sync, layer 00
        return None
    if (header[2] >> 2) & 0xF > 12:  # sampling frequency index
        return None
    length = ((header[3] & 0x03) << 11) | (header[4] << 3) | (header[5] >> 5)
    return length if length >= 7 else None


def _two_frames(data: bytes, frame_length: object, header_size: int) -> bool:
    assert callable(frame_length)
    for offset in range(0, max(0, len(data) - header_size)):
        if data[offset] != 0xFF:
            continue
        first = frame_length(data[offset : offset + header_size])
        if first is None:
            continue
        nxt = offset + first
        if nxt + header_size > len(data):
            return False
        if frame_length(data[nxt : nxt + header_size]) is not None:
            return True
    return False


def sniff_format(head: bytes) -> str | None:
    """The ffmpeg demuxer (``-f``) the stream starting with ``head`` certainly needs, or None."""
    head = head[:SNIFF_BYTES]
    if head.startswith(b"OggS"):
        return "ogg"
    if len(head) >= 3 * _TS_PACKET and all(head[i] == 0x47 for i in range(0, 3 * _TS_PACKET, _TS_PACKET)):
        return "mpegts"
    if head[4:8] in _BMFF_FIRST_BOXES:
        return None
    if head.startswith(b"ID3"):
        return "mp3"
    if _two_frames(head, _adts_frame_length, 6):
        return "aac"
    if _two_frames(head, _mp3_frame_length, 4):
        return "mp3"
    return None
