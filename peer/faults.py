"""What a benchmark makes a headless peer do wrong, and the accounting of it.

``Faults`` are the misbehaviours a swarm benchmark gives some of its peers
(none by default, as ``ztream peer`` runs): serving corrupt chunks, lying to
the tracker (claiming the whole track, serving nothing), leaving at an audio position (closing everything, or going silent as a frozen
machine would), and a tracker unreachable for ``want`` from a playlist
position on. The decisions are here; ``peer/node.py`` carries them out.

``LateFrames`` reassembles what a neighbour already dropped (banned, or left
behind) still sends, never to be used, so that a benchmark can count every
bad chunk that was sent (``PeerReport.discarded``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.wire import Piece, WireError, decode

__all__ = ["Faults", "LateFrames", "NO_FAULTS"]


@dataclass(frozen=True, slots=True)
class Faults:
    corrupt: bool = False  # serve corrupt chunks (every chunk served has a byte flipped)
    leave_at: float | None = None  # leave at this audio position ...
    leave_track: int = 0  # ... of this playlist position (0: the first track)
    vanish: bool = False  # leaving, go silent (the channels stay open, unanswered) instead of closing
    # From this playlist position on, the control socket drops our ``want``
    # frames: the tracker is unreachable for lookups.
    drop_wants_from: int | None = None
    # A liar: claims every chunk of what it plays (``have`` complete) and serves
    # nothing: it answers no offer and asks nobody (its ``want`` frames dropped).
    liar: bool = False

    def leaves(self, track_position: int, audio_position: float) -> bool:
        """Whether the peer leaves now, at ``audio_position`` of playlist track ``track_position``."""
        return self.leave_at is not None and track_position == self.leave_track and audio_position >= self.leave_at

    def drops_want(self, track_position: int) -> bool:
        """Whether a ``want`` sent while playlist track ``track_position`` plays is dropped."""
        return self.drop_wants_from is not None and track_position >= self.drop_wants_from


NO_FAULTS = Faults()


@dataclass(slots=True)
class LateFrames:
    """The pieces a dropped neighbour still sends, reassembled in order (a gap drops the chunk)."""

    pieces: dict[int, bytearray] = field(default_factory=dict)

    def feed(self, frame: bytes) -> tuple[int, bytes] | None:
        """One frame; a whole chunk ``(index, data)`` once its last piece came, else None."""
        try:
            piece = decode(frame)
        except WireError:
            return None
        if not isinstance(piece, Piece):
            return None
        buf = self.pieces.setdefault(piece.index, bytearray())
        if piece.offset != len(buf):
            self.pieces.pop(piece.index, None)
            return None
        buf += piece.data
        if len(buf) < piece.total:
            return None
        del self.pieces[piece.index]
        return piece.index, bytes(buf)
