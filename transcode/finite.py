"""Whether the first bytes of an upstream's body declare a finite file. Pure.

An answer with an audio type and no Content-Length is taken for an endless
stream (docs/live.md), and most are: Icecast, SHOUTcast and their kin send
no length. But a file can be sent without one too (chunked transfer: a
script, a proxy that transforms, a server trickling it out), and recording
such a file as a radio station would lose its end. Many formats say in
their first bytes how long the file is, which a stream never does:

- WAV: the RIFF chunk's size (a stream writes 0 or 0xFFFFFFFF there);
- FLAC: STREAMINFO's total samples (0 means unknown, as an encoder writing
  to a pipe leaves it);
- MP3: an ID3v2 tag (radio servers start listeners mid-stream, with no tag)
  or a Xing/Info/VBRI header in the first frame (its frame count);
- MP4/M4A: an ``ftyp`` box (a progressive MP4 is a file by construction).

Ogg, ADTS and plain MPEG frames say nothing either way: they stay endless.
"""

from __future__ import annotations

import struct

__all__ = ["declares_finite", "HEAD_BYTES"]

# How much of the body the question needs, at most (an ID3v2 tag may hold artwork: it is not read).
HEAD_BYTES = 4096

_ENDLESS_SIZES = (0, 0xFFFFFFFF)


def declares_finite(head: bytes) -> bool:
    """True when ``head`` (the body's first bytes) is a file that states its own length."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE" and len(head) >= 12:
        return int(struct.unpack_from("<I", head, 4)[0]) not in _ENDLESS_SIZES
    if head[:4] == b"fLaC" and len(head) >= 4 + 4 + 18:
        # First metadata block: STREAMINFO (type 0); total samples are its bits 108..143.
        if head[4] & 0x7F != 0:
            return False
        info = head[8:26]
        total: int = ((info[13] & 0x0F) << 32) | int(struct.unpack_from(">I", info, 14)[0])
        return total > 0
    if head[:3] == b"ID3":
        return True
    if head[4:8] == b"ftyp":
        return True
    if len(head) >= 4 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # The Xing/Info header sits after the first frame's side information
        # (9 to 32 bytes), VBRI 32 bytes after the frame header.
        first = head[:4 + 32 + 8]
        return b"Xing" in first or b"Info" in first or head[36:40] == b"VBRI"
    return False
